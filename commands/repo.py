"""The mono-repo as fluxbot understands it: clusters, pins, versions, apps and components.

`RepoSnapshot` reads files through a `TreeReader` (git in `bot/`, a dict in tests), never
through git itself, so every decision made on it is a pure function of the repo's content.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Iterable, Iterator, Mapping, Protocol

import semver
from nodesemver import max_satisfying
from ruamel.yaml.error import YAMLError

from commands.changelog import looks_semantic_release, normalise, parse_changelog
from commands.layout import Layout
from commands.model import (
    App,
    BackReference,
    ChangelogSection,
    Cluster,
    Component,
    Pin,
    Version,
)
from commands.yamledit import load_documents

INFRASTRUCTURE_DIR = "infrastructure"
CLUSTERS_DIR = "clusters"
CHANGELOG = "CHANGELOG.md"
_PIN_KINDS = ("tag", "branch", "semver", "commit")
_YAML_SUFFIXES = (".yaml", ".yml")


class TreeReader(Protocol):
    """Read-only access to the repository's history, as `bot/` provides it."""

    head: str  # commit of the default branch this snapshot reads

    def list_files(self, ref: str, prefix: str) -> list[str]: ...

    def read(self, ref: str, path: str) -> bytes | None: ...

    def tags(self) -> dict[str, str]: ...  # tag name -> commit

    def history(self, ref: str, path: str) -> Iterable[tuple[str, bytes | None]]: ...

    def changed_files(self, old: str, new: str, prefix: str) -> list[str]: ...


@lru_cache(maxsize=8192)
def strict_version(text: str) -> semver.Version | None:
    """A semantic version from `v0.4.0` or `0.4.0`, or None."""
    candidate = text[1:] if text[:1] in "vV" else text
    try:
        return semver.Version.parse(candidate)
    except ValueError:
        return None


def _tag_prefix(tag: str) -> str:
    """`infra-` of `infra-v1.2.0`; '' for a tag without a prefix, or no version at all."""
    for separator in re.finditer(r"[-_/]", tag) if strict_version(tag) is None else ():
        if strict_version(tag[separator.end():]) is not None:
            return tag[: separator.end()]
    return ""


@lru_cache(maxsize=8192)
def parse_version(text: str) -> semver.Version | None:
    """A semantic version from a tag name (`v0.4.0`, `0.4.0`, or prefixed: `infra-v0.4.0`), or None.

    Which tags count as releases is the layout's choice (`layout.tag_prefix`); this reads any.
    """
    found = strict_version(text)
    for separator in re.finditer(r"[-_/]", text) if found is None else ():
        found = strict_version(text[separator.end():])
        if found is not None:
            break
    return found


@lru_cache(maxsize=4096)
def _documents(raw: bytes) -> tuple[Any, ...]:
    # Cached by content: the same blob (a cluster file, a release) is parsed once per process.
    return tuple(load_documents(raw.decode("utf-8")))


def documents_or_none(raw: bytes | None) -> tuple[Any, ...]:
    """Parsed YAML documents of a file; none for a missing or unparseable one."""
    if raw is None:
        return ()
    try:
        return documents(raw)
    except ValueError:
        return ()


def documents(raw: bytes) -> tuple[Any, ...]:
    """Parsed YAML documents of a file; raises ValueError if it is not YAML."""
    try:
        return _documents(raw)
    except (YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__) from None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def is_flux_kustomization(doc: Any) -> bool:
    return _is_kind(doc, "Kustomization", "kustomize.toolkit.fluxcd.io")


def _is_kind(doc: Any, kind: str, group: str) -> bool:
    return (
        isinstance(doc, Mapping)
        and doc.get("kind") == kind
        and str(doc.get("apiVersion", "")).startswith(group + "/")
    )


def _clean_path(path: Any) -> str:
    return posixpath.normpath(str(path or ".")).lstrip("./") if path else ""


@dataclass(frozen=True)
class _Doc:
    path: str
    index: int
    data: Any


class RepoSnapshot:
    """The repository at one commit of its default branch."""

    def __init__(
        self,
        reader: TreeReader,
        productive_overrides: Mapping[str, bool] | None = None,
        layout: Layout | None = None,
    ) -> None:
        self.reader = reader
        self.head = reader.head
        self._overrides = dict(productive_overrides or {})
        self.layout = layout or Layout()

    @property
    def productive_overrides(self) -> Mapping[str, bool]:
        return self._overrides

    # clusters ---------------------------------------------------------------------------------

    @cached_property
    def _cluster_files(self) -> dict[str, list[str]]:
        """Cluster name -> its files; a cluster is a directory `cluster_depth` levels under `clusters`."""
        files: dict[str, list[str]] = {}
        prefix, depth = self.layout.clusters.strip("/") + "/", self.layout.cluster_depth
        for path in self.reader.list_files(self.head, prefix):
            parts = path[len(prefix):].split("/")
            if len(parts) > depth:
                name = parts[depth - 1]
                self._cluster_dirs.setdefault(name, prefix + "/".join(parts[:depth]))
                if self._cluster_dirs[name] == prefix + "/".join(parts[:depth]):
                    files.setdefault(name, []).append(path)
        return files

    @cached_property
    def _cluster_dirs(self) -> dict[str, str]:
        return {}

    def directory(self, name: str) -> str:
        """The directory of cluster `name` (`clusters/<name>` unless the layout nests them)."""
        self._cluster_files  # noqa: B018 - fills _cluster_dirs
        groups = "<group>/" * (self.layout.cluster_depth - 1)
        return self._cluster_dirs.get(name, f"{self.layout.clusters.strip('/')}/{groups}{name}")

    @property
    def cluster_names(self) -> list[str]:
        return sorted(self._cluster_files)

    def cluster(self, name: str) -> Cluster | None:
        """The named cluster, or None when `clusters/<name>/` does not exist."""
        if name not in self._cluster_files:
            return None
        return self._read_cluster(name)

    @cached_property
    def clusters(self) -> list[Cluster]:
        return [self._read_cluster(name) for name in self.cluster_names]

    def _read_cluster(self, name: str) -> Cluster:
        cache = self.__dict__.setdefault("_cluster_cache", {})
        if name not in cache:
            cache[name] = self._build_cluster(name)
        return cache[name]

    def _build_cluster(self, name: str) -> Cluster:
        yaml_files = [p for p in self._cluster_files[name] if p.endswith(_YAML_SUFFIXES)]
        apps = self._apps(name)
        problems: list[str] = []
        infra_ks: _Doc | None = None
        infrastructure = _clean_path(self.layout.infrastructure)
        directory = self.directory(name)
        # Cheap byte filters first: flux-system/gotk-components.yaml alone is 13,000 lines.
        found = [doc for doc in self._docs(yaml_files, infrastructure.encode(), problems)
                 if _is_kind(doc.data, "Kustomization", "kustomize.toolkit.fluxcd.io")
                 and _clean_path(_get(doc.data, "spec", "path")) == infrastructure]
        places = sorted({posixpath.dirname(doc.path) for doc in found})
        if len(places) > 1:
            problems.append(
                f"{directory}/ holds {len(places)} infrastructure Kustomizations ({', '.join(p + '/' for p in places)}): "
                f"clusters nested under `{self.layout.clusters}/<group>/<cluster>/`? set `layout.cluster_depth: "
                f"{self.layout.cluster_depth + 1}`")
        else:
            infra_ks = found[0] if found else None
        if infra_ks is None:
            problem = "; ".join(problems) or (
                f"no Flux Kustomization with `path: ./{infrastructure}/` under {directory}/"
                + self._layout_hint(yaml_files)
            )
            productive, source = self._productive(name, None, f"unknown (treated as productive): {problem}")
            return Cluster(name, None, productive, {}, apps, problem, productive_source=source)

        variables = _get(infra_ks.data, "spec", "postBuild", "substitute") or {}
        if not isinstance(variables, Mapping):
            variables = {}
        flag = variables.get("meta_productive")
        productive, why = self._productive(name, flag, (
            f"unknown (treated as productive): no `meta_productive` in the postBuild.substitute of {infra_ks.path}"
            if flag is None else
            f"unknown (treated as productive): `meta_productive` is `{flag}`, not true or false"))
        source = _get(infra_ks.data, "spec", "sourceRef") or {}
        source_name = str(_get(source, "name") or "")
        source_ns = str(_get(source, "namespace") or _get(infra_ks.data, "metadata", "namespace") or "")
        backref = None
        if _get(source, "kind") in (None, "GitRepository") and source_name:
            for doc in self._docs(yaml_files, source_name.encode(), problems):
                if (
                    _is_kind(doc.data, "GitRepository", "source.toolkit.fluxcd.io")
                    and _get(doc.data, "metadata", "name") == source_name
                    and (_get(doc.data, "metadata", "namespace") or source_ns) == source_ns
                ):
                    backref = BackReference(doc.path, doc.index, source_name, read_pin(doc.data))
                    break
        problem = "" if backref else (
            f"the infrastructure Kustomization in {infra_ks.path} takes GitRepository "
            f"`{source_name}` as source, but no such GitRepository is under {directory}/"
        )
        ks_name = str(_get(infra_ks.data, "metadata", "name") or "")
        return Cluster(name, backref, productive, dict(variables), apps, problem, ks_name, why, directory)

    def _layout_hint(self, yaml_files: list[str]) -> str:
        """Say which `layout.*` key would help when the infrastructure seems to live elsewhere."""
        for doc in self._docs(yaml_files, b"kustomize.toolkit.fluxcd.io", []):
            path = _clean_path(_get(doc.data, "spec", "path"))
            source = str(_get(doc.data, "spec", "sourceRef", "name") or "")
            if (_is_kind(doc.data, "Kustomization", "kustomize.toolkit.fluxcd.io") and path and source != "flux-system"
                    and not path.startswith(self.layout.clusters.strip("/") + "/")):
                return (f"; {doc.path} builds ./{path}/ from `{source}`: if that is the released directory, "
                        f"set `layout.infrastructure: {path}`")
        return ""

    def _productive(self, name: str, flag: object, unknown: str) -> tuple[bool, str]:
        """(productive, why): the config decides first; then `meta_productive`; unknown fails closed."""
        if name in self._overrides:
            return self._overrides[name], f"fluxbot.yaml: clusters.{name}.productive"
        text = str(flag).strip().lower() if flag is not None else ""
        if text in ("true", "false"):
            return text == "true", ""
        return True, unknown

    def _docs(self, paths: list[str], needle: bytes, problems: list[str]) -> Iterator[_Doc]:
        for path in sorted(paths):
            raw = self.reader.read(self.head, path)
            if raw is None or needle not in raw:
                continue
            try:
                docs = documents(raw)
            except ValueError as exc:
                problems.append(f"{path} is not valid YAML ({exc})")
                continue
            for index, data in enumerate(docs):
                yield _Doc(path, index, data)

    def _apps(self, name: str) -> tuple[App, ...]:
        path = f"{self.directory(name)}/apps/kustomization.yaml"
        raw = self.reader.read(self.head, path)
        if raw is None:
            return ()
        try:
            data = documents(raw)[0]
        except (ValueError, IndexError):
            return ()
        values: dict[str, str] = {}
        for patch in _get(data, "patches") or []:
            target = _get(patch, "target", "name")
            if target and _get(patch, "path"):
                values[str(target)] = posixpath.normpath(f"{self.directory(name)}/apps/{patch['path']}")
        apps = []
        for resource in _get(data, "resources") or []:
            app_name = posixpath.basename(str(resource).rstrip("/"))
            apps.append(App(app_name, str(resource), values.get(app_name)))
        return tuple(apps)

    # versions ---------------------------------------------------------------------------------

    @cached_property
    def changelog(self) -> dict[str, ChangelogSection]:
        raw = self.reader.read(self.head, self.layout.changelog)
        return parse_changelog(raw.decode("utf-8", "replace")) if raw else {}

    @cached_property
    def unsupported(self) -> list[str]:
        """What of this repo fluxbot does not understand with its layout, each with the key that helps."""
        layout, notes = self.layout, []
        files = self.reader.list_files(self.head, "")
        if not any(p.startswith(layout.clusters.strip("/") + "/") for p in files):
            notes.append(f"no {layout.clusters}/ directory: set `layout.clusters` to where cluster directories are")
        if not any(p.startswith(layout.infrastructure.strip("/") + "/") for p in files):
            notes.append(f"no {layout.infrastructure}/ directory on the default branch: "
                         "set `layout.infrastructure` to the released directory")
        raw = self.reader.read(self.head, layout.changelog)
        if raw is None:
            notes.append(f"no {layout.changelog}: releases show no changelog entries "
                         "(set `layout.changelog` to the changelog file, if there is one)")
        elif layout.changelog_style == "keep-a-changelog" and looks_semantic_release(raw.decode("utf-8", "replace")) \
                and "unreleased" not in self.changelog:
            notes.append(f"{layout.changelog} is written by semantic-release (no `Unreleased` section): "
                         "set `layout.changelog_style: semantic-release`")
        if not self.versions:
            prefixed = sorted((_tag_prefix(tag), tag) for tag in self.reader.tags() if _tag_prefix(tag))
            if prefixed:
                prefix, example = prefixed[-1]
                notes.append(f"tags like `{example}` are not read as releases: set `layout.tag_prefix: {prefix}`")
        return notes

    @cached_property
    def versions(self) -> list[Version]:
        """Semver tags, oldest first."""
        found = []
        dates = getattr(self.reader, "tag_dates", dict)()  # optional: readers without dates give none
        for tag, commit in self.reader.tags().items():
            version = self.layout.tag_version(tag)
            parsed = strict_version(version) if version is not None else None
            if parsed is not None:
                found.append((parsed, Version(tag, commit, self.changelog.get(normalise(version)), dates.get(tag, ""))))
        return [version for _, version in sorted(found, key=lambda item: item[0])]

    @cached_property
    def parsed_versions(self) -> list[semver.Version]:
        """The semantic versions of `versions`, in the same (ascending) order."""
        return [strict_version(self.layout.tag_version(v.tag) or "") for v in self.versions]  # type: ignore[misc]

    def version(self, text: str) -> Version | None:
        """The release named `text` (`v0.4.0` or `0.4.0`), or None."""
        wanted = parse_version(text)
        if wanted is None:
            return None
        return next((v for v in self.versions if parse_version(v.tag) == wanted), None)

    @property
    def latest(self) -> Version | None:
        return self.versions[-1] if self.versions else None

    def selected(self, pin: Pin | None) -> Version | None:
        """The release a pin makes Flux apply: the tag itself, or for `ref.semver` the newest tag in the range.

        Flux's source-controller reads ranges with Masterminds/semver (npm-like; `,` joins
        constraints), and leaves prereleases out unless the range names one.
        """
        if pin is None or pin.kind not in ("tag", "semver"):
            return None
        if pin.kind == "tag":
            return self.version(pin.value)
        by_text = {str(parsed): version for parsed, version in zip(self.parsed_versions, self.versions)}
        try:
            best = max_satisfying(list(by_text), pin.value.replace(",", " "), loose=False)
        except (ValueError, TypeError):
            return None
        return by_text.get(str(best)) if best else None

    def versions_between(self, old: Version, new: Version) -> list[Version]:
        """Releases after `old` up to and including `new`, oldest first."""
        low, high = sorted((parse_version(old.tag), parse_version(new.tag)))
        return [v for v in self.versions if low < parse_version(v.tag) <= high]

    def yaml_documents(self, ref: str, prefix: str, needle: bytes = b"") -> Iterator[tuple[str, Any]]:
        """(path, document) of every parseable YAML file under `prefix` at `ref` that contains `needle`."""
        for path in self.reader.list_files(ref, prefix):
            if path.endswith(_YAML_SUFFIXES):
                raw = self.reader.read(ref, path)
                if raw and needle in raw:
                    for doc in documents_or_none(raw):
                        yield path, doc

    def components(self, version: Version) -> list[Component]:
        """Every HelmRelease under `infrastructure/` at that version."""
        found = [
            Component(
                name=str(_get(doc, "metadata", "name")),
                namespace=str(_get(doc, "metadata", "namespace") or ""),
                chart=str(_get(doc, "spec", "chart", "spec", "chart") or ""),
                chart_version=str(_get(doc, "spec", "chart", "spec", "version") or "*"),
                path=path,
            )
            for path, doc in self.yaml_documents(version.commit, self.layout.infrastructure.strip("/") + "/", b"HelmRelease")
            if _is_kind(doc, "HelmRelease", "helm.toolkit.fluxcd.io")
        ]
        return sorted(found, key=lambda c: (c.name, c.namespace))

    # history ----------------------------------------------------------------------------------

    def pin_history(self, cluster: Cluster) -> Iterator[tuple[str, Pin]]:
        """(commit, pin) of the cluster's back-reference, newest first, from its file's history."""
        if cluster.backref is None:
            return
        for commit, raw in self.reader.history(self.head, cluster.backref.path):
            for doc in documents_or_none(raw):
                if _is_kind(doc, "GitRepository", "source.toolkit.fluxcd.io") and (
                    _get(doc, "metadata", "name") == cluster.backref.name
                ):
                    pin = read_pin(doc)
                    if pin is not None:
                        yield commit, pin
                    break


def read_pin(git_repository: Any) -> Pin | None:
    """The `spec.ref` of a GitRepository; Flux's precedence is commit > semver > tag > branch."""
    ref = _get(git_repository, "spec", "ref")
    if not isinstance(ref, Mapping):
        return None
    for kind in ("commit", "semver", "tag", "branch"):
        if ref.get(kind) not in (None, ""):
            return Pin(kind, str(ref[kind]))  # type: ignore[arg-type]
    return None


SAFE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
