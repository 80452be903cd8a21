"""A Kubernetes API server stand-in on 127.0.0.1 with a small simulation of Flux running on it.

The API server part follows the Kubernetes API concepts doc
(https://kubernetes.io/docs/reference/using-api/api-concepts/) for what fluxbot relies on:
- `metadata.generation` starts at 1 and bumps when `spec` changes; writes to the main resource
  ignore `status`, which only the `/status` subresource changes (CRDs with `subresources.status`,
  which every Flux CRD declares); metadata (annotations, labels) never bumps the generation;
- a global `resourceVersion`; lists take `labelSelector` (=, ==, !=, `key`, `!key`), `limit` and
  `continue` (a continue token older than the compaction window answers 410 Expired);
- watches (`?watch=true`) stream newline-delimited JSON events from `resourceVersion`; `0` or none
  starts with synthetic ADDED events for the current state; a resourceVersion older than the
  compaction window gets an ERROR event with a 410 Status ("too old resource version"), the way
  the watch cache answers; `allowWatchBookmarks=true` gets BOOKMARK events; `timeoutSeconds` ends
  the stream; `DELETE` sends DELETED;
- discovery (`/apis`, `/apis/<group>/<version>`) serves the versions a cluster has installed, so a
  cluster can run HelmRelease `v2beta2`, or no helm-controller at all.
Tests inject what a real API server does under stress: `fail(...)` (401/403/429 with Retry-After/5xx
on the next requests), `compact()` (watches and continue tokens expire with 410),
`disconnect_watches()` (a stream ends mid-chunk), `stall_watches()` (the TCP peer goes silent),
`watch_error(...)` (an ERROR event).

`FluxSimulation` (`standin.flux`) runs source-, kustomize- and helm-controller against it, after
their sources (cited at each behaviour), with a scenario API: a git remote (`push_main`,
`release`), `fail(kind, name, reason, message, times)` and `helm_fails(...)` ("the chart upgrade
fails twice, then succeeds"), and `hold(...)` to keep one object from reconciling.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from bot.kube import flux
from tests.standins.http import StandInServer, send_json

PLURALS = {plural: (group, kind) for plural, (group, kind, _) in flux.KINDS.items()}
Key = tuple[str, str, str]  # (plural, namespace, name)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


@dataclass
class Fault:
    status: int
    times: int = 1
    method: str = ""  # "" = any
    path: str = ""  # substring of the request path; "" = any
    watch: bool | None = None  # only watches / only non-watches / both
    retry_after: str = ""


@dataclass
class KubernetesStandIn:
    helm_versions: tuple[str, ...] = ("v2",)  # () = no helm-controller on this cluster
    bookmark_every: float = 0.3
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)  # (rv, plural, type, obj)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (plural, name, patch) on main resources
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)  # (method, path, query)

    def __post_init__(self) -> None:
        self.version = 100
        self.compacted = 0  # events at or below this resourceVersion are gone
        self.changed = threading.Condition()
        self.down = False
        self.faults: list[Fault] = []
        self.denied: set[tuple[str, ...]] = set()  # RBAC: (verb, resource) or (verb, resource, name)
        self._cuts = 0  # disconnect_watches() generation
        self._stalled = threading.Event()
        self._signals: list[dict[str, Any]] = []  # (seq, event) pushed into open watches
        self._continues: dict[str, list[dict[str, Any]]] = {}
        self.open_watches = 0
        self.server = StandInServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.flux = FluxSimulation(self)

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
        self.flux.stop()
        self.down = True
        self._stalled.clear()
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- storage (what etcd and the API server's registry do) ---------------------------------

    def _record(self, plural: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        stored = copy.deepcopy(obj)
        self.events.append((self.version, plural, kind, copy.deepcopy(stored)))
        self.changed.notify_all()
        return stored

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as given, status included (seeding a test, like restoring from etcd)."""
        with self.changed:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", "flux-system")
            key = (plural, meta["namespace"], meta["name"])
            old = self.objects.get(key)
            meta.setdefault("generation", (old or {}).get("metadata", {}).get("generation", 1))
            meta.setdefault("uid", hashlib.sha1(repr(key).encode()).hexdigest())
            obj.setdefault("apiVersion", f"{PLURALS[plural][0]}/{flux.KINDS[plural][2][0]}")
            obj.setdefault("kind", PLURALS[plural][1])
            self.objects[key] = self._record(plural, "MODIFIED" if old else "ADDED", copy.deepcopy(obj))
            return copy.deepcopy(self.objects[key])

    def apply(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update through the main resource: status is ignored, a spec change bumps generation."""
        with self.changed:
            meta = obj.get("metadata") or {}
            key = (plural, meta.get("namespace", "flux-system"), meta["name"])
            old = self.objects.get(key)
            if old is None:
                new = copy.deepcopy(obj)
                new.pop("status", None)
                new["metadata"] = {**copy.deepcopy(meta), "namespace": key[1], "generation": 1,
                                   "uid": hashlib.sha1(repr(key).encode()).hexdigest(),
                                   "creationTimestamp": _now()}
                new.setdefault("kind", PLURALS[plural][1])
                new.setdefault("apiVersion", f"{PLURALS[plural][0]}/{flux.KINDS[plural][2][0]}")
                self.objects[key] = self._record(plural, "ADDED", new)
                return copy.deepcopy(self.objects[key])
            new = copy.deepcopy(old)
            for part in ("labels", "annotations"):
                if meta.get(part) is not None:
                    new["metadata"][part] = {**(new["metadata"].get(part) or {}), **meta[part]}
            if "spec" in obj and obj["spec"] != old.get("spec"):
                new["spec"] = copy.deepcopy(obj["spec"])
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if new == old:
                return copy.deepcopy(old)  # a no-op apply writes nothing (no new resourceVersion)
            self.objects[key] = self._record(plural, "MODIFIED", new)
            return copy.deepcopy(self.objects[key])

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any], status: bool = False
              ) -> dict[str, Any] | None:
        """A merge patch on the main resource (status ignored) or on /status (only status)."""
        with self.changed:
            old = self.objects.get((plural, namespace, name))
            if old is None:
                return None
            merged = _merge(copy.deepcopy(old), copy.deepcopy(patch))
            new = copy.deepcopy(old)
            if status:
                new["status"] = merged.get("status") or {}
            else:
                new["metadata"] = merged["metadata"]
                new["metadata"]["generation"] = old["metadata"].get("generation", 1)
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                if merged.get("spec") != old.get("spec"):
                    new["spec"] = merged.get("spec")
                    new["metadata"]["generation"] += 1
            if new == old:
                return copy.deepcopy(old)
            self.objects[(plural, namespace, name)] = self._record(plural, "MODIFIED", new)
            return copy.deepcopy(self.objects[(plural, namespace, name)])

    def set_status(self, plural: str, name: str, status: dict[str, Any], namespace: str = "flux-system") -> None:
        """Replace an object's status through the /status subresource (what a controller does)."""
        with self.changed:
            obj = copy.deepcopy(self.objects[(plural, namespace, name)])
            obj["status"] = copy.deepcopy(status)
            self.objects[(plural, namespace, name)] = self._record(plural, "MODIFIED", obj)

    def delete(self, plural: str, name: str, namespace: str = "flux-system") -> None:
        with self.changed:
            obj = self.objects.pop((plural, namespace, name))
            self._record(plural, "DELETED", obj)

    def get(self, plural: str, name: str, namespace: str = "flux-system") -> dict[str, Any] | None:
        with self.changed:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    # -- what a real API server does under stress ------------------------------------------------

    def fail(self, status: int, times: int = 1, method: str = "", path: str = "", watch: bool | None = None,
             retry_after: str = "") -> None:
        """Answer the next `times` matching requests with `status` (401, 403, 429, 500, 503...)."""
        with self.changed:
            self.faults.append(Fault(status, times, method, path, watch, retry_after or ("1" if status == 429 else "")))

    def compact(self) -> None:
        """etcd compaction: every resourceVersion seen so far is too old to watch or continue from."""
        with self.changed:
            self.compacted = self.version
            self.events = []
            self._continues.clear()

    def disconnect_watches(self) -> None:
        """Every open watch stream is cut mid-stream (a load balancer or apiserver restart)."""
        with self.changed:
            self._cuts += 1
            self.changed.notify_all()

    def stall_watches(self, stalled: bool = True) -> None:
        """Open and new watch streams go silent, ignoring timeoutSeconds (a dead TCP peer)."""
        if stalled:
            self._stalled.set()
        else:
            self._stalled.clear()
        with self.changed:
            self.changed.notify_all()

    def watch_error(self, code: int = 500, message: str = "internal error") -> None:
        """Open watches receive an ERROR event carrying a Status (and the server ends them)."""
        with self.changed:
            self._signals.append({"type": "ERROR", "object": _status(code, "InternalError", message)})
            self.changed.notify_all()

    def list_requests(self, plural: str) -> list[tuple[str, dict[str, list[str]]]]:
        """(path, query) of every list (not watch) of `plural` so far."""
        return [(p, q) for m, p, q in list(self.requests)
                if m == "GET" and p.rstrip("/").endswith("/" + plural) and q.get("watch", [""])[0] not in ("true", "1")]

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        if self.down:
            return send_json(handler, 503, _status(503, "ServiceUnavailable", "the server is shutting down"))
        url = urlparse(handler.path)
        query = parse_qs(url.query)
        self.requests.append((handler.command, url.path, query))
        watching = query.get("watch", [""])[0] in ("true", "1")
        if self._fault(handler, url.path, watching):
            return
        parts = url.path.strip("/").split("/")
        if parts == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] and handler.command == "POST":
            return self._review(handler)
        if parts == ["apis"]:
            return send_json(handler, 200, self._groups())
        if len(parts) == 3 and parts[0] == "apis":
            return self._resources(handler, parts[1], parts[2])
        if len(parts) == 4 and parts[0] == "apis":  # cluster-wide: /apis/{group}/{version}/{plural}
            parts = parts[:3] + ["namespaces", "*", parts[3]]
        if len(parts) < 6 or parts[0] != "apis" or parts[5] not in PLURALS or PLURALS[parts[5]][0] != parts[1]:
            return send_json(handler, 404, _status(404, "NotFound",
                                                  f"the server could not find the requested resource ({url.path})"))
        group, version, namespace, plural = parts[1], parts[2], parts[4], parts[5]
        if version not in self._served(plural):
            return send_json(handler, 404, _status(404, "NotFound",
                                                  f"the server could not find the requested resource ({url.path})"))
        if len(parts) >= 7:
            return self._one(handler, plural, version, namespace, parts[6], status=parts[7:] == ["status"])
        if watching:
            return self._watch(handler, plural, version, namespace, query)
        return self._list(handler, plural, version, namespace, query)

    def _fault(self, handler: BaseHTTPRequestHandler, path: str, watching: bool) -> bool:
        with self.changed:
            for fault in self.faults:
                if fault.times > 0 and (not fault.method or fault.method == handler.command) \
                        and fault.path in path and fault.watch in (None, watching):
                    fault.times -= 1
                    break
            else:
                return False
        # read the body first: left on a keep-alive connection, it would be parsed as the next request
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        reasons = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests", 500: "InternalError",
                   503: "ServiceUnavailable", 504: "Timeout"}
        message = {401: "Unauthorized",
                   403: f'access to {path} is forbidden: User "system:serviceaccount:fluxbot:fluxbot" cannot '
                        f'{handler.command.lower()} it',
                   429: "Too many requests, please try again later."}.get(fault.status, "the server is unavailable")
        send_json(handler, fault.status, _status(fault.status, reasons.get(fault.status, "InternalError"), message),
                  headers={"Retry-After": fault.retry_after} if fault.retry_after else None)
        return True

    def _review(self, handler: BaseHTTPRequestHandler) -> None:
        """SelfSubjectAccessReview (authorization.k8s.io/v1): allowed unless listed in `denied` as
        (verb, resource) or (verb, resource, name)."""
        review = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) or b"{}")
        attributes = (review.get("spec") or {}).get("resourceAttributes") or {}
        verb, resource, name = attributes.get("verb"), attributes.get("resource"), attributes.get("name")
        allowed = (verb, resource) not in self.denied and (verb, resource, name) not in self.denied
        send_json(handler, 201, {**review, "status": {"allowed": allowed}})

    def _served(self, plural: str) -> tuple[str, ...]:
        return self.helm_versions if plural == flux.HELMRELEASES else flux.KINDS[plural][2][:1]

    def _groups(self) -> dict[str, Any]:
        groups = []
        for plural, (group, _) in PLURALS.items():
            versions = self._served(plural)
            if versions:
                entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
                groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resources(self, handler: BaseHTTPRequestHandler, group: str, version: str) -> None:
        found = [p for p, (g, _) in PLURALS.items() if g == group and version in self._served(p)]
        if not found:
            return send_json(handler, 404, _status(404, "NotFound", "the server could not find the requested resource"))
        send_json(handler, 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
                                 "resources": [{"name": p, "singularName": "", "namespaced": True, "kind": PLURALS[p][1],
                                                "verbs": ["get", "list", "watch", "patch", "delete"]} for p in found]
                                              + [{"name": f"{p}/status", "namespaced": True, "kind": PLURALS[p][1],
                                                  "verbs": ["get", "patch", "update"]} for p in found]})

    def _one(self, handler: BaseHTTPRequestHandler, plural: str, version: str, namespace: str, name: str,
             status: bool) -> None:
        if handler.command == "PATCH":
            length = int(handler.headers.get("Content-Length") or 0)
            patch = json.loads(handler.rfile.read(length) or b"{}")
            if not status:
                self.patches.append((plural, name, patch))
            obj = self.patch(plural, namespace, name, patch, status=status)
        elif handler.command == "DELETE":
            obj = self.get(plural, name, namespace)
            if obj is not None:
                self.delete(plural, name, namespace)
        else:
            obj = self.get(plural, name, namespace)
        if obj is None:
            return send_json(handler, 404, _status(404, "NotFound",
                                                  f'{plural}.{PLURALS[plural][0]} "{name}" not found'))
        send_json(handler, 200, _served_as(obj, plural, version))

    def _matching(self, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        test = _selector(selector)
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                if p == plural and namespace in (ns, "*") and test((o.get("metadata") or {}).get("labels") or {})]

    def _list(self, handler: BaseHTTPRequestHandler, plural: str, version: str, namespace: str,
              query: dict[str, list[str]]) -> None:
        limit = int(query.get("limit", ["0"])[0] or 0)
        token = query.get("continue", [""])[0]
        with self.changed:
            if token:
                # A continue token is served from the snapshot of the first page (a consistent list);
                # after compaction it has expired: 410, "The provided continue parameter is too old".
                rv, offset = json.loads(base64.b64decode(token))
                items = self._continues.get(token)
                if items is None or int(rv) <= self.compacted:
                    return send_json(handler, 410, _status(410, "Expired", "The provided continue parameter is too old "
                                                                           "to display a consistent list result."))
            else:
                rv, offset = self.version, 0
                items = self._matching(plural, namespace, query.get("labelSelector", [""])[0])
        page = items[offset: offset + limit] if limit else items[offset:]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(items):
            next_token = base64.b64encode(json.dumps([rv, offset + limit]).encode()).decode()
            with self.changed:
                self._continues[next_token] = items
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(items) - offset - limit
        send_json(handler, 200, {"apiVersion": f"{PLURALS[plural][0]}/{version}", "kind": f"{PLURALS[plural][1]}List",
                                 "metadata": meta, "items": [_served_as(o, plural, version) for o in page]})

    def _watch(self, handler: BaseHTTPRequestHandler, plural: str, version: str, namespace: str,
               query: dict[str, list[str]]) -> None:
        since_text = query.get("resourceVersion", [""])[0]
        timeout = float(query.get("timeoutSeconds", ["1800"])[0])
        bookmarks = query.get("allowWatchBookmarks", [""])[0] in ("true", "1")
        test = _selector(query.get("labelSelector", [""])[0])
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def send(event: dict[str, Any]) -> None:
            line = (json.dumps(event) + "\n").encode()
            handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            handler.wfile.flush()

        with self.changed:
            cuts, signals = self._cuts, len(self._signals)
            self.open_watches += 1
            if since_text in ("", "0"):
                # "Start at most recent / any": synthetic ADDED events for the current state first.
                first = [{"type": "ADDED", "object": _served_as(o, plural, version)}
                         for o in self._matching(plural, namespace, query.get("labelSelector", [""])[0])]
                sent = self.version
            else:
                first, sent = [], int(since_text)
                if sent < self.compacted:
                    first, sent = [{"type": "ERROR", "object": _status(
                        410, "Expired", f"too old resource version: {sent} ({self.compacted})")}], -1
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        try:
            for event in first:
                send(event)
            while sent >= 0 and not self.down:
                if self._stalled.is_set():
                    time.sleep(0.05)  # a silent peer: nothing, not even the end of the stream
                    continue
                if time.monotonic() >= deadline:
                    break
                with self.changed:
                    if self._cuts != cuts:
                        handler.connection.shutdown(socket.SHUT_RDWR)  # mid-stream: no last chunk
                        return
                    pending = [e for e in self.events if e[0] > sent and e[1] == plural
                               and namespace in (e[3]["metadata"].get("namespace"), "*")
                               and test(e[3]["metadata"].get("labels") or {})]
                    injected = self._signals[signals:]
                    signals = len(self._signals)
                    if not pending and not injected:
                        if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_every:
                            pending_bookmark = self.version
                        else:
                            # woken by every change, cut and error; else at the next bookmark or the end
                            due = last_bookmark + self.bookmark_every if bookmarks else deadline
                            self.changed.wait(timeout=max(0.01, min(due, deadline) - time.monotonic()))
                            continue
                    else:
                        pending_bookmark = 0
                    newest = max((e[0] for e in self.events), default=self.version)
                for event in injected:
                    send(event)
                if injected and any(e["type"] == "ERROR" for e in injected):
                    break
                for rv, _, kind, obj in pending:
                    send({"type": kind, "object": _served_as(obj, plural, version)})
                    sent = rv
                if pending_bookmark:
                    # BOOKMARK: "everything up to this resourceVersion was sent" (an object with
                    # only metadata.resourceVersion).
                    sent = max(sent, newest)
                    send({"type": "BOOKMARK", "object": {"kind": PLURALS[plural][1],
                                                         "apiVersion": f"{PLURALS[plural][0]}/{version}",
                                                         "metadata": {"resourceVersion": str(sent)}}})
                    last_bookmark = time.monotonic()
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            with self.changed:
                self.open_watches -= 1


def _served_as(obj: dict[str, Any], plural: str, version: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["apiVersion"] = f"{PLURALS[plural][0]}/{version}"
    return obj


def _selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated (AND)."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            tests.append(lambda labels, k=k, v=v: labels.get(k) != v)
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            tests.append(lambda labels, k=k, v=v: labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:]: k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda labels: all(t(labels) for t in tests)


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


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _handler(standin: KubernetesStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            standin.handle(self)

        do_PATCH = do_DELETE = do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# -- Flux on the cluster -------------------------------------------------------------------------

@dataclass
class Remote:
    """The git remote both GitRepositories read: branch heads, tags (peeled) and the manifests
    under each path at each commit (what `kustomize build` of that path would give)."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    trees: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # commit -> path -> objects

    def manifests(self, commit: str, path: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.trees.get(commit, {}).get(_path(path), []))


@dataclass
class Script:
    """A scripted failure: the next `times` reconciles of an object fail with `reason`."""

    reason: str
    message: str
    times: int
    stalled: bool = False
    revision: str = ""  # only while the source is at this revision ('' = any)


class FluxSimulation:
    """source-, kustomize- and helm-controller reconciling the stand-in's objects.

    One thread; each object is reconciled when its generation, its reconcile request annotation or
    its source's artifact changed, or its interval / retry interval elapsed, like controller-runtime
    requeues. Flux durations run `scale` times faster (1m -> 60 * scale seconds).
    """

    def __init__(self, kube: KubernetesStandIn) -> None:
        self.kube = kube
        self.remote = Remote()
        self.scale = 0.002
        self.charts: dict[str, str] = {}  # chart name -> newest version a HelmRepository serves
        self.scripts: dict[Key, list[Script]] = {}  # played in order
        self.held: set[Key] = set()
        self._due: dict[Key, float] = {}
        self._seen: dict[Key, tuple[Any, ...]] = {}
        self._health_since: dict[Key, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconciles: list[Key] = []

    # -- scenario API ------------------------------------------------------------------------

    def start(self) -> FluxSimulation:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="flux-simulation", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def bootstrap(self, cluster: str, main: str, tag: str = "", tag_commit: str = "", *,
                  charts: dict[str, str] | None = None, wait: bool = True, timeout: float = 10,
                  owner_interval: str = "1m0s") -> None:
        """`flux bootstrap` of flux-demo's layout: flux-system syncing `clusters/<cluster>` of main,
        which pins the infrastructure GitRepository to `tag` (see the demo repo's infrastructure.yaml),
        or without a tag to main itself (a test cluster)."""
        self.cluster = cluster
        if tag:
            self.release(tag, tag_commit, charts or {})
        else:
            self.infrastructure(main, charts or {})
        self.push_main(main, tag)
        self.kube.apply(flux.GITREPOSITORIES, {
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"interval": owner_interval, "ref": {"branch": "main"}, "url": "https://github.com/f4z3r/flux-demo.git",
                     "secretRef": {"name": "flux-system"}}})
        self.kube.apply(flux.KUSTOMIZATIONS, {
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"interval": "10m0s", "path": f"./clusters/{cluster}", "prune": True,
                     "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}})
        self.start()
        if wait:
            expected = flux.revision(tag, tag_commit) if tag else flux.revision("main", main)
            self.wait_until(lambda: self.applied(expected), timeout)

    def push_main(self, commit: str, tag: str = "", charts: dict[str, str] | None = None) -> None:
        """A commit on main whose `clusters/<cluster>/infrastructure.yaml` pins `tag` (or main)."""
        self.remote.branches["main"] = commit
        if not tag:
            self.infrastructure(commit, charts or {})
        self.remote.trees.setdefault(commit, {})[_path(f"./clusters/{self.cluster}")] = [
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
             "metadata": {"name": "infrastructure", "namespace": "flux-system"},
             "spec": {"interval": "1m", "url": "https://github.com/f4z3r/flux-demo.git",
                      "ref": {"tag": tag} if tag else {"branch": "main"}}},
            {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
             "metadata": {"name": "infrastructure", "namespace": "flux-system"},
             "spec": {"interval": "5m", "retryInterval": "1m", "timeout": "5m", "path": "./infrastructure/",
                      "prune": True, "wait": True, "sourceRef": {"kind": "GitRepository", "name": "infrastructure"}}},
        ]

    def release(self, tag: str, commit: str, charts: dict[str, str] | None = None, *, retries: int = 0) -> None:
        """A release tag of the infrastructure (see `infrastructure`)."""
        self.remote.tags[tag] = commit
        self.infrastructure(commit, charts, retries=retries, release=tag)

    def infrastructure(self, commit: str, charts: dict[str, str] | None = None, *, retries: int = 0,
                       release: str = "") -> None:
        """`infrastructure/` at a commit: nested Kustomizations (nginx dependsOn
        external-secrets-operator, as in flux-demo) each applying one HelmRelease."""
        charts = {"external-secrets": "0.9.0", "ingress-nginx": "4.11.3", **(charts or {})}
        tree: dict[str, list[dict[str, Any]]] = {"infrastructure": []}
        for ks, namespace, chart, depends in (("external-secrets-operator", "external-secrets", "external-secrets", None),
                                              ("nginx", "ingress-nginx", "ingress-nginx", "external-secrets-operator")):
            spec: dict[str, Any] = {"interval": "5m", "retryInterval": "1m", "timeout": "5m", "wait": True,
                                    "prune": True, "path": f"./infrastructure/{ks}",
                                    "sourceRef": {"kind": "GitRepository", "name": "infrastructure"}}
            if depends:
                spec["dependsOn"] = [{"name": depends}]
            tree["infrastructure"].append({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                           "metadata": {"name": ks, "namespace": "flux-system"}, "spec": spec})
            tree[f"infrastructure/{ks}"] = [{
                "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
                "metadata": {"name": chart, "namespace": namespace},
                "spec": {"interval": "1m", "chart": {"spec": {"chart": chart, "version": charts[chart],
                                                              "sourceRef": {"kind": "HelmRepository", "name": chart}}},
                         "upgrade": {"remediation": {"retries": retries}},
                         "values": {"release": release or commit}}}]
        self.remote.trees.setdefault(commit, {}).update(tree)

    def fail(self, plural: str, name: str, reason: str, message: str, times: int = 1, *, namespace: str = "flux-system",
             stalled: bool = False, revision: str = "") -> None:
        """The next `times` reconciles of the object fail with `reason` (Stalled when `stalled`), or
        only those at source `revision` (a failure that belongs to that revision)."""
        self.scripts.setdefault((plural, namespace, name), []).append(Script(reason, message, times, stalled, revision))

    def helm_fails(self, name: str, namespace: str, times: int, message: str = "context deadline exceeded",
                   reason: str = "") -> None:
        """The next `times` Helm actions of the release fail (helm-controller then retries, remediates
        or stalls); with `reason=SourceNotReady` its chart is not ready instead (nothing is tried)."""
        self.scripts.setdefault((flux.HELMRELEASES, namespace, name), []).append(Script(reason, message, times))

    def hold(self, plural: str, name: str, namespace: str = "flux-system", held: bool = True) -> None:
        """Keep the controller from reconciling this object (a busy controller, a slow rollout)."""
        (self.held.add if held else self.held.discard)((plural, namespace, name))
        self._due[(plural, namespace, name)] = 0

    def applied(self, expected: str) -> bool:
        """Every Kustomization at `expected` and Ready, every HelmRelease Ready at its generation."""
        with self.kube.changed:
            objects = list(self.kube.objects.items())
        infra = [o for (p, _, n), o in objects if p == flux.KUSTOMIZATIONS and n != "flux-system"]
        releases = [o for (p, _, _), o in objects if p == flux.HELMRELEASES]
        return bool(infra) and all(flux.kstatus(o) == "current" and o["status"].get("lastAppliedRevision") == expected
                                   for o in infra) and all(flux.kstatus(o) == "current" for o in releases)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("the Flux simulation did not get there in time")
            time.sleep(0.01)

    # -- the controllers -----------------------------------------------------------------------

    def seconds(self, duration: str, default: str) -> float:
        units = {"h": 3600, "m": 60, "s": 1}
        total, number = 0.0, ""
        for char in (duration or default):
            if char.isdigit() or char == ".":
                number += char
            elif char in units and number:
                total, number = total + float(number) * units[char], ""
        return total * self.scale

    def _loop(self) -> None:
        while not self._stop.is_set() and not self.kube.down:
            with self.kube.changed:
                keys = sorted(k for k in self.kube.objects if k[0] in PLURALS)
            for key in keys:
                if self._stop.is_set():
                    return
                try:
                    self._maybe_reconcile(key)
                except KeyError:
                    pass  # deleted meanwhile
            time.sleep(0.005)

    def _maybe_reconcile(self, key: Key) -> None:
        obj = self.kube.get(key[0], key[2], key[1])
        if obj is None or key in self.held:
            return
        meta, spec = obj["metadata"], obj.get("spec") or {}
        requested = (meta.get("annotations") or {}).get(flux.REQUESTED_AT, "")
        trigger: tuple[Any, ...] = (meta.get("generation"), requested)
        if key[0] == flux.KUSTOMIZATIONS:
            source = self._source(obj)
            trigger += (((source or {}).get("status") or {}).get("artifact") or {}).get("revision"),
        if trigger == self._seen.get(key) and time.monotonic() < self._due.get(key, 0):
            return
        self._seen[key] = trigger
        if spec.get("suspend"):
            self._due[key] = float("inf")  # controllers skip suspended objects entirely
            return
        self.reconciles.append(key)
        status = copy.deepcopy(obj.get("status") or {})
        interval = {flux.GITREPOSITORIES: self._git, flux.KUSTOMIZATIONS: self._kustomize,
                    flux.HELMRELEASES: self._helm}[key[0]](key, obj, status)
        if requested:
            status["lastHandledReconcileAt"] = requested  # finalizeStatus in every controller
        self._due[key] = time.monotonic() + interval
        if status != obj.get("status"):
            self.kube.patch(key[0], key[1], key[2], {"status": status}, status=True)

    def _source(self, ks: dict[str, Any]) -> dict[str, Any] | None:
        ref = (ks.get("spec") or {}).get("sourceRef") or {}
        return self.kube.get(flux.GITREPOSITORIES, ref.get("name", ""), ref.get("namespace") or ks["metadata"]["namespace"])

    def _script(self, key: Key, revision: str = "") -> Script | None:
        for script in self.scripts.get(key, []):
            if script.times > 0 and script.revision in ("", revision):
                script.times -= 1
                return script
        return None

    def _git(self, key: Key, obj: dict[str, Any], status: dict[str, Any]) -> float:
        """source-controller gitrepository_controller.go: resolve the ref, store an artifact
        `<ref>@sha1:<commit>`; on a fetch error keep the old artifact, set FetchFailed and Ready=False
        (GitOperationFailed / AuthenticationFailed) and leave observedGeneration behind."""
        spec = obj["spec"]
        ref = spec.get("ref") or {}
        name, kind = (ref["tag"], "tags") if ref.get("tag") else (ref.get("branch", "master"), "branches")
        commit = (self.remote.tags if kind == "tags" else self.remote.branches).get(name)
        script = self._script(key)
        interval = self.seconds(spec.get("interval", ""), "1m")
        if script is not None or commit is None:
            reason = script.reason if script else flux.GIT_OPERATION_FAILED
            message = script.message if script else (
                f"failed to checkout and determine revision: unable to clone '{spec.get('url')}': "
                f"couldn't find remote ref \"refs/{'tags' if kind == 'tags' else 'heads'}/{name}\"")
            _set(status, flux.FETCH_FAILED, "True", reason, message)
            _set(status, flux.READY, "False", reason, message)
            _set(status, flux.RECONCILING, "True", flux.PROGRESSING_WITH_RETRY, "processing object: new generation")
            return interval
        revision = flux.revision(name, commit)
        status["artifact"] = {"revision": revision, "digest": "sha256:" + hashlib.sha256(revision.encode()).hexdigest(),
                              "path": f"gitrepository/{key[1]}/{key[2]}/{commit}.tar.gz", "lastUpdateTime": _now(),
                              "url": f"http://source-controller.flux-system.svc.cluster.local./{commit}.tar.gz"}
        _drop(status, flux.FETCH_FAILED, flux.RECONCILING, flux.STALLED)
        _set(status, flux.ARTIFACT_IN_STORAGE, "True", flux.SUCCEEDED, f"stored artifact for revision '{revision}'")
        _set(status, flux.READY, "True", flux.SUCCEEDED, f"stored artifact for revision '{revision}'")
        status["observedGeneration"] = obj["metadata"]["generation"]
        return interval

    def _kustomize(self, key: Key, obj: dict[str, Any], status: dict[str, Any]) -> float:
        """kustomize-controller kustomization_controller.go, in its order: source artifact, dependsOn,
        build and apply, health checks (`wait`) within `timeout`, then lastAppliedRevision and Ready."""
        spec, meta = obj["spec"], obj["metadata"]
        retry = self.seconds(spec.get("retryInterval") or spec.get("interval", ""), "1m")
        dependency_requeue = self.seconds("30s", "30s")  # --requeue-dependency default
        source = self._source(obj)
        artifact = ((source or {}).get("status") or {}).get("artifact")
        if not artifact:
            _set(status, flux.READY, "False", flux.ARTIFACT_FAILED, "Source artifact not found, retrying in 30s")
            return dependency_requeue
        revision = artifact["revision"]
        for dep in spec.get("dependsOn") or []:
            other = self.kube.get(flux.KUSTOMIZATIONS, dep["name"], dep.get("namespace") or meta["namespace"])
            if other is None or flux.kstatus(other) != "current" or (
                    other["spec"].get("sourceRef") == spec.get("sourceRef")
                    and other["status"].get("lastAppliedRevision") != revision):
                _set(status, flux.READY, "False", flux.DEPENDENCY_NOT_READY,
                     f"dependency '{dep.get('namespace') or meta['namespace']}/{dep['name']}' is not ready")
                return dependency_requeue
        timeout = self.seconds(spec.get("timeout") or spec.get("interval", ""), "5m")
        status["lastAttemptedRevision"] = revision
        script = self._script(key, revision)
        if script is not None:
            _set(status, flux.READY, "False", script.reason, script.message)
            if script.stalled:
                # terminal: no requeue until the spec changes or a reconcile is requested
                _set(status, flux.STALLED, "True", script.reason, script.message)
                _drop(status, flux.RECONCILING)
                return float("inf")
            else:
                _set(status, flux.RECONCILING, "True", flux.PROGRESSING_WITH_RETRY,
                     f"Detecting drift for revision {revision} with a timeout of {spec.get('timeout', '5m')}")
            return retry
        commit = flux.revision_parts(revision)[1]
        applied = []
        for item in self.remote.manifests(commit, spec.get("path", "./")):
            plural = flux.PLURAL_OF_KIND[item["kind"]]
            labels = item["metadata"].setdefault("labels", {})
            labels.update({flux.OWNER_NAME_LABEL: meta["name"], flux.OWNER_NAMESPACE_LABEL: meta["namespace"]})
            applied.append(self.kube.apply(plural, item))
        if spec.get("wait") and applied:
            waiting = [o for o in (self.kube.get(flux.PLURAL_OF_KIND[a["kind"]], a["metadata"]["name"],
                                                 a["metadata"]["namespace"]) for a in applied)
                       if o is not None and flux.kstatus(o) != "current"]
            if waiting:
                since = self._health_since.setdefault(key, time.monotonic())
                if time.monotonic() - since > timeout:
                    del self._health_since[key]
                    message = "timeout waiting for: [" + ", ".join(
                        f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']} status: 'InProgress'"
                        for o in waiting) + "]"
                    _set(status, flux.READY, "False", flux.HEALTH_CHECK_FAILED, message)
                    _set(status, flux.HEALTHY, "False", flux.HEALTH_CHECK_FAILED, message)
                    _set(status, flux.RECONCILING, "True", flux.PROGRESSING_WITH_RETRY, message)
                    return retry
                message = f"Running health checks for revision {revision} with a timeout of {spec.get('timeout', '5m')}"
                _set(status, flux.READY, "Unknown", flux.PROGRESSING, "Reconciliation in progress")
                _set(status, flux.RECONCILING, "True", flux.PROGRESSING, message)
                return self.seconds("2s", "2s")  # poll the health checks again soon
        self._health_since.pop(key, None)
        # api/v1/inventory_types.go: every applied object as '<namespace>_<name>_<group>_<kind>'
        status["inventory"] = {"entries": [
            {"id": f"{a['metadata']['namespace']}_{a['metadata']['name']}_{a['apiVersion'].split('/')[0]}_{a['kind']}",
             "v": a["apiVersion"].split("/")[1]} for a in applied]}
        status["lastAppliedRevision"] = revision
        status["observedGeneration"] = meta["generation"]
        _drop(status, flux.RECONCILING, flux.STALLED)
        if spec.get("wait"):
            _set(status, flux.HEALTHY, "True", flux.SUCCEEDED, "Health check passed")
        _set(status, flux.READY, "True", flux.RECONCILIATION_SUCCEEDED, f"Applied revision: {revision}")
        return self.seconds(spec.get("interval", ""), "10m")

    def _helm(self, key: Key, obj: dict[str, Any], status: dict[str, Any]) -> float:
        """helm-controller (reconcile/atomic_release.go): install or upgrade when the generation or the
        config changed; a failure counts against `upgrade.remediation.retries` and, past it, marks the
        release Stalled=RetriesExceeded; success records a deployed snapshot first in status.history."""
        spec, meta = obj["spec"], obj["metadata"]
        chart = spec["chart"]["spec"]
        version = chart.get("version", "*")
        version = self.charts.get(chart["chart"], "1.0.0") if version in ("*", "") else version
        digest = "sha256:" + hashlib.sha256(json.dumps(spec.get("values") or {}, sort_keys=True).encode()).hexdigest()
        history = status.setdefault("history", [])
        current = bool(history) and history[0].get("status") == flux.DEPLOYED and status.get(
            "lastAttemptedGeneration") == meta["generation"] and history[0].get("chartVersion") == version \
            and history[0].get("configDigest") == digest
        interval = self.seconds(spec.get("interval", ""), "10m")
        if current:
            return interval
        if flux.is_true(obj, flux.STALLED) and status.get("lastAttemptedGeneration") == meta["generation"]:
            return float("inf")  # a stalled release waits for a new generation (or a reset request)
        action = "upgrade" if history else "install"
        status.update(lastAttemptedGeneration=meta["generation"], lastAttemptedRevision=version,
                      lastAttemptedConfigDigest=digest, lastAttemptedReleaseAction=action)
        snapshot = {"name": meta["name"], "namespace": meta["namespace"], "chartName": chart["chart"],
                    "chartVersion": version, "appVersion": version, "configDigest": digest,
                    "digest": "sha256:" + hashlib.sha256(f"{version}{digest}{len(history)}".encode()).hexdigest(),
                    "version": (history[0]["version"] + 1) if history else 1,
                    "firstDeployed": history[-1]["firstDeployed"] if history else _now(), "lastDeployed": _now()}
        script = self._script(key)
        if script is not None and script.reason == flux.SOURCE_NOT_READY:
            # helmrelease_controller.go: the chart's source is not ready yet; no Helm action is tried
            _set(status, flux.READY, "False", flux.SOURCE_NOT_READY, script.message)
            return self.seconds("30s", "30s")
        if script is not None:
            failures = status.get("failures", 0) + 1
            status.update(failures=failures, **{f"{action}Failures": status.get(f"{action}Failures", 0) + 1})
            reason = flux.UPGRADE_FAILED if action == "upgrade" else flux.INSTALL_FAILED
            message = (f"Helm {action} failed for release {meta['namespace']}/{meta['name']} with chart "
                       f"{chart['chart']}@{version}: {script.message}")
            history.insert(0, {**snapshot, "status": "failed"})
            _set(status, flux.RELEASED, "False", reason, message)
            _set(status, flux.READY, "False", reason, message)
            retries = ((spec.get(action) or {}).get("remediation") or {}).get("retries", 0)
            if retries >= 0 and failures > retries:
                _set(status, flux.STALLED, "True", flux.RETRIES_EXCEEDED,
                     f"Failed to {action} after {failures} attempt(s)")
                _drop(status, flux.RECONCILING)
                return float("inf")
            _set(status, flux.RECONCILING, "True", flux.PROGRESSING_WITH_RETRY, message)
            good = next((h for h in history[1:] if h.get("status") in (flux.DEPLOYED, flux.SUPERSEDED)), None)
            strategy = ((spec.get(action) or {}).get("remediation") or {}).get("strategy", "rollback")
            if action == "upgrade" and good is not None and strategy == "rollback":
                # remediation: Helm rolls back to the last good release (a new release version)
                for old in history:
                    if old.get("status") == flux.DEPLOYED:
                        old["status"] = flux.SUPERSEDED
                history[0]["status"] = flux.SUPERSEDED if history[0]["status"] == flux.DEPLOYED else history[0]["status"]
                history.insert(0, {**good, "status": flux.DEPLOYED, "version": history[0]["version"] + 1,
                                   "lastDeployed": _now()})
                _set(status, flux.REMEDIATED, "True", flux.ROLLBACK_SUCCEEDED,
                     f"Helm rollback to previous release {meta['namespace']}/{meta['name']}.v{good['version']} "
                     f"with chart {good['chartName']}@{good['chartVersion']} succeeded")
            return self.seconds("1m", "1m")
        for old in history:
            if old.get("status") == flux.DEPLOYED:
                old["status"] = flux.SUPERSEDED
        history.insert(0, {**snapshot, "status": flux.DEPLOYED})
        del history[5:]  # helm-controller keeps a short history (spec.maxHistory caps Helm's own)
        for counter in ("failures", "installFailures", "upgradeFailures"):
            status.pop(counter, None)
        verb = "Upgrade" if action == "upgrade" else "Install"
        message = (f"Helm {action} succeeded for release {meta['namespace']}/{meta['name']}.v{snapshot['version']} "
                   f"with chart {chart['chart']}@{version}")
        _drop(status, flux.RECONCILING, flux.STALLED, flux.REMEDIATED)
        _set(status, flux.RELEASED, "True", f"{verb}Succeeded", message)
        _set(status, flux.READY, "True", f"{verb}Succeeded", message)
        status["observedGeneration"] = meta["generation"]
        return interval


def _set(status: dict[str, Any], kind: str, value: str, reason: str, message: str) -> None:
    conditions = status.setdefault("conditions", [])
    for cond in conditions:
        if cond["type"] == kind:
            if cond["status"] != value:
                cond["lastTransitionTime"] = _now()
            cond.update(status=value, reason=reason, message=message)
            return
    conditions.append({"type": kind, "status": value, "reason": reason, "message": message,
                       "lastTransitionTime": _now()})


def _drop(status: dict[str, Any], *kinds: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] not in kinds]


def _path(path: str) -> str:
    return path.strip().lstrip("./").strip("/")
