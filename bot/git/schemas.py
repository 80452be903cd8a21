"""Schema validation of rendered objects, offline: Kubernetes built-in kinds against the schema set
that the `kubernetes-validate` package ships (generated from Kubernetes' OpenAPI), custom kinds
(Flux's among them) against the `openAPIV3Schema` of the CustomResourceDefinitions the repo itself
holds (its `gotk-components.yaml`, or any CRD in a render).

CRD schemas are OpenAPI v3.0 schema objects, which JSON Schema draft 4 validates faithfully enough
(`x-kubernetes-*` extensions are ignored), as kubeconform does for CRDs.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

CRD_KIND = "CustomResourceDefinition"


@dataclass(frozen=True)
class Invalid:
    """The first problem found in an object: where in it, and what."""

    field: str
    message: str


def _plain(obj: Any) -> Any:
    """ruamel's mappings and sequences as plain JSON values (what the schemas describe)."""
    return json.loads(json.dumps(obj, default=str))


@lru_cache(maxsize=1)
def builtin_version() -> str:
    return kubernetes_validate.latest_version()


@lru_cache(maxsize=256)
def _builtin_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    version = builtin_version()
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{version}-local"
    try:
        schema = kv.schema_contents(f"{directory}/{kind.lower()}-{group}.json", version)
    except (FileNotFoundError, kv.InvalidSchemaError):
        return None
    definitions = kv.schema_contents(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _crd_validator(schema_json: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft4Validator(json.loads(schema_json))


_crd_validator_cached = lru_cache(maxsize=256)(_crd_validator)


@lru_cache(maxsize=256)
def _schema_digest(schema_json: str) -> str:
    return hashlib.sha256(schema_json.encode()).hexdigest()


class _KnownValid:
    """Digests of (schema, object) pairs found valid, process-wide and bounded: a promotion validates
    the same rendered objects as the last one (the renders are cached), and jsonschema is the cost."""

    def __init__(self, limit: int = 50_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
            return False

    def add(self, digest: str) -> None:
        with self._lock:
            self._seen[digest] = None
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)


_KNOWN_VALID = _KnownValid()


@dataclass
class Schemas:
    """Validators for the kinds a render may hold: built-in ones, and those of the repo's CRDs."""

    crds: dict[tuple[str, str], str] = field(default_factory=dict)  # (apiVersion, kind) -> openAPIV3Schema JSON
    crd_sources: set[str] = field(default_factory=set)

    def learn(self, objects: Iterable[tuple[Any, str]]) -> None:
        """Take the schemas of the CustomResourceDefinitions among `objects` ((object, its file) pairs)."""
        for obj, source in objects:
            if not isinstance(obj, dict) or obj.get("kind") != CRD_KIND:
                continue
            spec = obj.get("spec") or {}
            group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
            for version in spec.get("versions") or []:
                schema = ((version or {}).get("schema") or {}).get("openAPIV3Schema")
                if group and kind and isinstance(schema, dict) and version.get("name"):
                    self.crds[(f"{group}/{version['name']}", kind)] = json.dumps(_plain(schema), sort_keys=True)
                    self.crd_sources.add(source)

    def known(self, obj: dict) -> bool:
        api, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        return (api, kind) in self.crds or _builtin_validator(kind, api) is not None

    def check(self, obj: dict) -> Invalid | None:
        """The first schema violation of `obj`; None when it is valid or no schema is known for its kind."""
        api, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        data = _plain(obj)
        # The origin note fluxbot asked kustomize for is not part of what Flux applies.
        annotations = (data.get("metadata") or {}).get("annotations") or {}
        annotations.pop("config.kubernetes.io/origin", None)
        if not annotations and "annotations" in (data.get("metadata") or {}):
            del data["metadata"]["annotations"]
        crd = self.crds.get((api, kind))
        # the schema is part of the key: the same object may meet another CRD version in another repo
        schema = _schema_digest(crd) if crd is not None else f"{builtin_version()}:{api}:{kind}"
        digest = hashlib.sha256(f"{schema}\n{json.dumps(data, sort_keys=True)}".encode()).hexdigest()
        if digest in _KNOWN_VALID:
            return None
        if crd is not None:
            validator = _crd_validator_cached(crd)
            # A custom resource's metadata is checked by the API server, not by its CRD's schema.
            data_to_check = {k: v for k, v in data.items() if k != "metadata"}
        else:
            validator = _builtin_validator(kind, api)
            data_to_check = data
        if validator is None:
            return None
        error = jsonschema.exceptions.best_match(validator.iter_errors(data_to_check))
        if error is None:
            _KNOWN_VALID.add(digest)
            return None
        where = ".".join(str(part) for part in error.absolute_path) or "(the object)"
        return Invalid(where, _short(error.message))


def _short(message: str) -> str:
    return message if len(message) <= 300 else message[:299] + "…"
