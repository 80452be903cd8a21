"""The object-level difference between two renders of a cluster: added, removed, changed.

Objects are matched by API group, kind, namespace and name (a version bump of the API is a change,
not a removal and an addition). A removed object is deleted by Flux only when the Kustomization
that applied it has `prune: true` (https://fluxcd.io/flux/components/kustomize/kustomizations/#prune);
otherwise it stays on the cluster. Secrets' `data` and `stringData` values never reach a diff:
each is replaced by a marker that says only whether it changed.
"""
from __future__ import annotations

import copy
import difflib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from ruamel.yaml import YAML

REDACTED = "<redacted>"
REDACTED_CHANGED = "<redacted, changed>"
_SECRET_FIELDS = ("data", "stringData")

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class AppliedObject:
    """A rendered object and what Flux does with it: who applies it, and whether it prunes."""

    manifest: Mapping[str, Any]
    applied_by: str = ""  # "Kustomization flux-system/nginx"
    prune: bool = True


@dataclass(frozen=True, order=True)
class ObjectKey:
    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class ObjectChange:
    change: ChangeKind
    key: ObjectKey
    diff: str  # unified diff of the object's YAML (redacted)
    applied_by: str = ""
    prune: bool = True  # for a removal: whether Flux deletes it from the cluster

    def describe(self) -> str:
        if self.change == "removed":
            fate = "Flux prunes it" if self.prune else "left on the cluster: its Kustomization has no `prune: true`"
            return f"{self.key} ({fate})"
        return str(self.key)


def object_key(manifest: Mapping[str, Any]) -> ObjectKey:
    api_version = str(manifest.get("apiVersion") or "")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    meta = manifest.get("metadata") or {}
    return ObjectKey(group, str(manifest.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def diff_objects(base: Iterable[AppliedObject], head: Iterable[AppliedObject]) -> list[ObjectChange]:
    """Added, removed and changed objects from `base` to `head`, sorted by kind, namespace, name."""
    old, new = _keyed(base), _keyed(head)
    changes: list[ObjectChange] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None and after is not None:
            changes.append(ObjectChange("added", key, _unified(key, None, after.manifest), after.applied_by, after.prune))
        elif after is None and before is not None:
            changes.append(ObjectChange("removed", key, _unified(key, before.manifest, None), before.applied_by, before.prune))
        elif before is not None and after is not None and before.manifest != after.manifest:
            text = _unified(key, before.manifest, after.manifest)
            if text:
                changes.append(ObjectChange("changed", key, text, after.applied_by, after.prune))
    return changes


def _keyed(objects: Iterable[AppliedObject]) -> dict[ObjectKey, AppliedObject]:
    keyed: dict[ObjectKey, AppliedObject] = {}
    for applied in objects:
        if isinstance(applied.manifest, Mapping):
            # Two layers applying the same object: the later one wins on the cluster, as in Flux.
            keyed[object_key(applied.manifest)] = applied
    return keyed


def _unified(key: ObjectKey, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    old_doc, new_doc = redact_pair(before, after)
    old_lines = to_yaml(old_doc).splitlines(keepends=True) if old_doc is not None else []
    new_lines = to_yaml(new_doc).splitlines(keepends=True) if new_doc is not None else []
    if old_lines == new_lines:
        return ""
    label = str(key)
    return "".join(difflib.unified_diff(old_lines, new_lines, f"a/{label}" if old_doc else "/dev/null",
                                        f"b/{label}" if new_doc else "/dev/null", n=3))


def is_secret(manifest: Mapping[str, Any] | None) -> bool:
    return isinstance(manifest, Mapping) and manifest.get("kind") == "Secret" and manifest.get("apiVersion") == "v1"


def redact_pair(before: Mapping[str, Any] | None,
                after: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """Both sides with Secret values replaced; a value that differs is marked changed on the head side."""
    if not (is_secret(before) or is_secret(after)):
        return before, after
    old = copy.deepcopy(dict(before)) if before is not None else None
    new = copy.deepcopy(dict(after)) if after is not None else None
    for field in _SECRET_FIELDS:
        old_values = old.get(field) if old is not None else None
        new_values = new.get(field) if new is not None else None
        if old is not None and isinstance(old_values, Mapping):
            old[field] = {k: REDACTED for k in old_values}
        elif old is not None and old_values is not None:
            old[field] = REDACTED
        if new is not None and isinstance(new_values, Mapping):
            previous = old_values if isinstance(old_values, Mapping) else {}
            new[field] = {k: REDACTED if k not in previous or previous[k] == v else REDACTED_CHANGED
                          for k, v in new_values.items()}
        elif new is not None and new_values is not None:
            new[field] = REDACTED if new_values == old_values else REDACTED_CHANGED
    return old, new


def to_yaml(manifest: Mapping[str, Any]) -> str:
    """An object as block YAML, keys in the order the render gave them."""
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    yaml.width = 4096
    yaml.dump(_plain(manifest), out)
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
