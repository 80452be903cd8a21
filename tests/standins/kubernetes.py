"""A Kubernetes API stand-in on 127.0.0.1 for the Flux kinds fluxbot reads.

Serves get, list, watch (`?watch=true`, newline-delimited JSON events from a `resourceVersion`)
and merge-patch for GitRepository, Kustomization and HelmRelease in any namespace, to the real
`kubernetes` client through a kubeconfig. Tests drive it like a controller: `set_status(...)`.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.standins.http import send_json

KINDS = {
    ("source.toolkit.fluxcd.io", "gitrepositories"): ("GitRepository", "v1"),
    ("kustomize.toolkit.fluxcd.io", "kustomizations"): ("Kustomization", "v1"),
    ("helm.toolkit.fluxcd.io", "helmreleases"): ("HelmRelease", "v2"),
}


@dataclass
class KubernetesStandIn:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)  # (rv, plural, type, obj)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    denied: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural) the RBAC does not allow

    def __post_init__(self) -> None:
        self.version = 100
        self.changed = threading.Condition()
        self.down = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path, context: str = "standin") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "standin-token"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        }))
        return path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (as a controller or `kubectl apply` would)."""
        with self.changed:
            meta = obj.setdefault("metadata", {})
            key = (plural, meta.get("namespace", "flux-system"), meta["name"])
            kind = "MODIFIED" if key in self.objects else "ADDED"
            self.version += 1
            meta["resourceVersion"] = str(self.version)
            self.objects[key] = copy.deepcopy(obj)
            self.events.append((self.version, plural, kind, copy.deepcopy(obj)))
            self.changed.notify_all()
            return obj

    def set_status(self, plural: str, name: str, status: dict[str, Any], namespace: str = "flux-system") -> None:
        obj = copy.deepcopy(self.objects[(plural, namespace, name)])
        obj["status"] = status
        self.put(plural, obj)

    # -- HTTP --------------------------------------------------------------------------------

    def _list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                if p == plural and namespace in (ns, "*")]

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        if self.down:
            handler.send_error(503)
            return
        url = urlparse(handler.path)
        parts = url.path.strip("/").split("/")
        if handler.command == "POST" and parts == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]:
            return self._access_review(handler)
        if len(parts) == 4 and parts[0] == "apis":  # cluster-wide: /apis/{group}/{version}/{plural}
            parts = parts[:3] + ["namespaces", "*", parts[3]]
        # /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
        if len(parts) < 6 or parts[0] != "apis" or (parts[1], parts[5]) not in KINDS:
            return send_json(handler, 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                                        "message": f"the server could not find the requested resource ({url.path})"})
        group, version, namespace, plural = parts[1], parts[2], parts[4], parts[5]
        kind, served = KINDS[(group, plural)]
        if version != served:
            return send_json(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "no such version"})
        query = parse_qs(url.query)
        if len(parts) == 7:
            key = (plural, namespace, parts[6])
            if handler.command == "PATCH":
                length = int(handler.headers.get("Content-Length") or 0)
                patch = json.loads(handler.rfile.read(length))
                with self.changed:
                    if key not in self.objects:
                        return send_json(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    self.patches.append((plural, parts[6], patch))
                    obj = _merge(copy.deepcopy(self.objects[key]), patch)
                return send_json(handler, 200, self.put(plural, obj))
            obj = self.objects.get(key)
            if obj is None:
                return send_json(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound",
                                            "message": f'{plural} "{parts[6]}" not found'})
            return send_json(handler, 200, obj)
        if query.get("watch", ["false"])[0] in ("true", "1"):
            return self._watch(handler, plural, namespace, int(query.get("resourceVersion", ["0"])[0] or 0),
                               float(query.get("timeoutSeconds", ["30"])[0]))
        return send_json(handler, 200, {"apiVersion": f"{group}/{version}", "kind": f"{kind}List",
                                    "metadata": {"resourceVersion": str(self.version)}, "items": self._list(plural, namespace)})

    def _access_review(self, handler: BaseHTTPRequestHandler) -> None:
        """SelfSubjectAccessReview: may the caller do spec.resourceAttributes? Answered from `denied`
        (https://kubernetes.io/docs/reference/kubernetes-api/authorization-resources/self-subject-access-review-v1/)."""
        review = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)))
        attributes = review["spec"]["resourceAttributes"]
        allowed = (attributes["verb"], attributes["resource"]) not in self.denied
        review["status"] = {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule allows it"})}
        send_json(handler, 201, review)

    def _watch(self, handler: BaseHTTPRequestHandler, plural: str, namespace: str, since: int, timeout: float) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        deadline = time.monotonic() + min(timeout, 30)
        sent = since
        try:
            while time.monotonic() < deadline and not self.down:
                with self.changed:
                    pending = [e for e in self.events if e[0] > sent and e[1] == plural
                               and namespace in (e[3]["metadata"].get("namespace", "flux-system"), "*")]
                    if not pending:
                        self.changed.wait(timeout=0.2)
                        continue
                for rv, _, kind, obj in pending:
                    line = (json.dumps({"type": kind, "object": obj}) + "\n").encode()
                    handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    handler.wfile.flush()
                    sent = rv
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def _handler(standin: KubernetesStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            standin.handle(self)

        do_PATCH = do_GET
        do_POST = do_GET  # SelfSubjectAccessReview

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
