"""One cluster's Flux objects through the official `kubernetes` client: the only module that calls it.

Discovers which API versions the cluster serves (HelmRelease `v2` or `v2beta2`, or no
helm-controller at all), lists with `limit`/`continue` and label selectors, watches with bookmarks
and a client-side read timeout, patches the reconcile request annotation, and retries what a real
API server answers under load or during a control-plane upgrade (429 with Retry-After, 5xx,
dropped connections) with backoff (tenacity). Everything else becomes a `ClusterError` whose
message is safe to show and says what to fix.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tenacity import (RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_when_event_set,
                      wait_exponential, wait_random)

from bot.kube import flux
from bot.metrics import API_ERRORS

if TYPE_CHECKING:
    from kubernetes import client

log = logging.getLogger(__name__)

RETRIED = frozenset({429, 500, 502, 503, 504})


def _k8s() -> Any:
    """The official client, imported on first use: `fluxbot shell` and `check` start without it (0.3 s)."""
    import kubernetes.client
    import kubernetes.config
    import kubernetes.watch

    return kubernetes


def _api_errors() -> tuple[type[BaseException], ...]:
    """What a call to an API server raises: its answer, the HTTP layer, the socket."""
    import urllib3

    return _k8s().client.ApiException, urllib3.exceptions.HTTPError, OSError
CLOSED = -1  # a ClusterError status of our own: the call was never sent


class ClusterError(Exception):
    """A cluster could not be read or asked; the message is safe to show."""

    def __init__(self, message: str, status: int = 0, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status  # HTTP status, 0 for a connection failure
        self.retry_after = retry_after

    @property
    def closed(self) -> bool:
        """Not sent at all: fluxbot is stopping (the cluster was closed) or the caller cancelled."""
        return self.status == CLOSED

    @property
    def transient(self) -> bool:
        """Worth retrying: overload, a control-plane upgrade, a dropped connection."""
        return self.status in RETRIED or self.status == 0


class Expired(ClusterError):
    """410 Gone: the resourceVersion (or continue token) is too old; list again."""


@dataclass(frozen=True)
class ClusterConnection:
    """How to reach one cluster: a kubeconfig context, or the cluster fluxbot runs in."""

    context: str = ""
    kubeconfig: str = ""
    in_cluster: bool = False
    namespace: str = "flux-system"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial: float = 0.25
    longest: float = 10.0


class FluxCluster:
    def __init__(self, name: str, connection: ClusterConnection, retry: RetryPolicy = RetryPolicy(),
                 page_size: int = 500, watch_grace: float = 15.0) -> None:
        self.name = name
        self.namespace = connection.namespace
        self._connection = connection
        self._api_client: client.ApiClient | None = None
        self._versions: dict[str, str | None] | None = None
        self._lock = threading.Lock()
        self.retry = retry
        self.page_size = page_size
        self.watch_grace = watch_grace  # how long past the server's timeoutSeconds a silent watch is given
        self._closed = threading.Event()
        self._streams: dict[watch.Watch, object] = {}  # open watches and who opened them, to cancel them

    def close(self) -> None:
        """End every open watch and retry wait now (shutdown); later calls fail at once."""
        self._closed.set()
        self.cancel_watches(None)

    def cancel_watches(self, owner: object | None) -> None:
        """Unblock the watches `owner` opened (all when None): their socket is shut, the stream ends."""
        with self._lock:
            streams = [s for s, o in self._streams.items() if owner is None or o is owner]
        for stream in streams:
            stream.stop()  # shuts the socket down, so a read blocked in another thread returns now

    # -- connection and discovery -------------------------------------------------------------

    @property
    def api(self) -> client.CustomObjectsApi:
        return _k8s().client.CustomObjectsApi(self._client())

    def _client(self) -> client.ApiClient:
        with self._lock:
            if self._api_client is None:
                try:
                    if self._connection.in_cluster:
                        configuration = _k8s().client.Configuration()
                        _k8s().config.load_incluster_config(client_configuration=configuration)
                        self._api_client = _k8s().client.ApiClient(configuration)
                    else:
                        self._api_client = _k8s().config.new_client_from_config(
                            config_file=self._connection.kubeconfig or None, context=self._connection.context or None)
                except (_k8s().config.ConfigException, OSError) as error:
                    raise ClusterError(f"cannot load the connection to cluster `{self.name}`: {error}") from None
            return self._api_client

    def version(self, plural: str) -> str | None:
        """The API version the cluster serves for a Flux kind, newest we know first; None if none."""
        if self._versions is None:
            answer = self._call(_k8s().client.ApisApi(self._client()).get_api_versions, what="API groups")
            served = {g.name: [v.version for v in g.versions] for g in answer.groups or []}
            self._versions = {p: next((v for v in versions if v in served.get(group, [])), None)
                              for p, (group, _, versions) in flux.KINDS.items()}
        return self._versions.get(plural)

    def _kind(self, plural: str) -> tuple[str, str]:
        version = self.version(plural)
        if version is None:
            group, kind, versions = flux.KINDS[plural]
            raise ClusterError(f"cluster `{self.name}` serves no {kind} API ({group}/{', '.join(versions)}): "
                               "is that Flux controller installed there?", status=404)
        return flux.KINDS[plural][0], version

    # -- reads --------------------------------------------------------------------------------

    def get(self, plural: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        group, version = self._kind(plural)
        try:
            return self._call(self.api.get_namespaced_custom_object, group, version, namespace or self.namespace,
                              plural, name, what=plural)
        except ClusterError as error:
            if error.status == 404:
                return None
            raise

    def list(self, plural: str, all_namespaces: bool = False, label_selector: str = "",
             cancel: threading.Event | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every object (paged with limit/continue) and the list's resourceVersion to watch from;
        `cancel` set ends the retry waits early."""
        group, version = self._kind(plural)
        for _ in range(3):  # a continue token that expires mid-list means: start the list again
            items: list[dict[str, Any]] = []
            token, resource_version = "", ""
            try:
                while True:
                    kwargs: dict[str, Any] = {"limit": self.page_size, "label_selector": label_selector}
                    if token:
                        kwargs["_continue"] = token
                    if all_namespaces:
                        answer = self._call(self.api.list_cluster_custom_object, group, version, plural,
                                            what=plural, cancel=cancel, **kwargs)
                    else:
                        answer = self._call(self.api.list_namespaced_custom_object, group, version, self.namespace,
                                            plural, what=plural, cancel=cancel, **kwargs)
                    meta = answer.get("metadata") or {}
                    items += answer.get("items") or []
                    resource_version = resource_version or str(meta.get("resourceVersion", ""))
                    token = meta.get("continue") or ""
                    if not token:
                        return items, resource_version
            except Expired:
                continue
        raise ClusterError(f"cluster `{self.name}` kept expiring the list of {plural}", status=410)

    def watch(self, plural: str, resource_version: str, timeout: int = 60, all_namespaces: bool = False,
              label_selector: str = "", owner: object = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) from `resource_version`, BOOKMARKs included, for at most `timeout`
        seconds; the read timeout also ends it if the connection goes silent. 410 raises `Expired`.
        `cancel_watches(owner)` ends it early from another thread."""
        group, version = self._kind(plural)
        self._refuse_closed(plural)
        stream = _k8s().watch.Watch()
        with self._lock:
            self._streams[stream] = owner
        if all_namespaces:
            call, args = self.api.list_cluster_custom_object, (group, version, plural)
        else:
            call, args = self.api.list_namespaced_custom_object, (group, version, self.namespace, plural)
        try:
            for event in stream.stream(call, *args, resource_version=resource_version, timeout_seconds=timeout,
                                       allow_watch_bookmarks=True, label_selector=label_selector,
                                       _request_timeout=(10, timeout + self.watch_grace)):
                kind, obj = event["type"], event["raw_object"]
                if kind == "ERROR":
                    raise self._error(_k8s().client.ApiException(status=obj.get("code", 500), reason=obj.get("message", "")), plural)
                yield kind, obj
        except _api_errors() as error:
            raise self._error(error, plural) from None
        finally:
            with self._lock:
                self._streams.pop(stream, None)
            stream.stop()

    # -- writes -------------------------------------------------------------------------------

    def request_reconcile(self, plural: str, name: str, namespace: str = "") -> str:
        """Set `reconcile.fluxcd.io/requestedAt` (as `flux reconcile` does); the value set."""
        group, version = self._kind(plural)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"metadata": {"annotations": {flux.REQUESTED_AT: stamp}}}
        self._call(self.api.patch_namespaced_custom_object, group, version, namespace or self.namespace, plural,
                   name, patch, what=plural)
        return stamp

    def access(self, reconcile_names: tuple[str, ...]) -> list[str]:
        """What fluxbot needs but may not do (a SelfSubjectAccessReview each), as `verb plural (names)`;
        [] when all is allowed. The needs are the chart's Role and ClusterRole: read the Flux kinds in
        the Flux namespace (HelmReleases cluster-wide), patch the objects it asks to reconcile."""
        k8s = _k8s().client
        api = k8s.AuthorizationV1Api(self._client())
        needs = [(verb, p, self.namespace, "") for p in (flux.GITREPOSITORIES, flux.KUSTOMIZATIONS)
                 for verb in ("get", "list", "watch")]
        if self.version(flux.HELMRELEASES) is not None:
            needs += [(verb, flux.HELMRELEASES, "", "") for verb in ("get", "list", "watch")]
        needs += [("patch", p, self.namespace, name) for p in (flux.GITREPOSITORIES, flux.KUSTOMIZATIONS)
                  for name in reconcile_names]
        missing: dict[str, list[str]] = {}  # "verb plural" -> the names refused ([] for the whole kind)
        for verb, plural, namespace, name in needs:
            review = k8s.V1SelfSubjectAccessReview(spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(group=flux.KINDS[plural][0], resource=plural, verb=verb,
                                                                namespace=namespace or None, name=name or None)))
            answer = self._call(api.create_self_subject_access_review, review, what="access review")
            if not answer.status.allowed:
                missing.setdefault(f"{verb} {plural}", []).extend([name] if name else [])
        return [what + (f" ({', '.join(names)})" if names else "") for what, names in missing.items()]

    # -- errors and retries ---------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any, what: str = "", cancel: threading.Event | None = None,
              **kwargs: Any) -> Any:
        def attempt() -> Any:
            self._refuse_closed(what)
            if cancel is not None and cancel.is_set():
                raise ClusterError(f"cluster `{self.name}`: {what or 'the call'} was cancelled", status=CLOSED)
            try:
                return method(*args, _request_timeout=15, **kwargs)
            except _api_errors() as error:
                raise self._error(error, what) from None

        # the waits between attempts end early when the caller cancels (an informer stopping) or the
        # cluster is closed (shutdown), so neither waits a backoff out
        woken = cancel or self._closed
        retrying = Retrying(stop=stop_after_attempt(self.retry.attempts) | stop_when_event_set(woken),
                            reraise=True, retry=retry_if_exception(lambda e: isinstance(e, ClusterError) and e.transient),
                            wait=_wait(self.retry), sleep=woken.wait, before_sleep=_log_retry(self.name, what))
        return retrying(attempt)

    def _refuse_closed(self, what: str) -> None:
        if self._closed.is_set():
            raise ClusterError(f"cluster `{self.name}`: fluxbot is stopping, {what or 'the call'} was not sent",
                               status=CLOSED)

    def _error(self, error: Exception, plural: str) -> ClusterError:
        what = flux.KINDS[plural][1] if plural in flux.KINDS else (plural or "object")
        if not isinstance(error, _k8s().client.ApiException):
            API_ERRORS.labels("kubernetes", "unreachable").inc()
            return ClusterError(f"cluster `{self.name}` is unreachable ({error.__class__.__name__})")
        status = int(error.status or 0)
        if status != 410:  # a watch's resourceVersion expiring is routine (it relists), not an error
            API_ERRORS.labels("kubernetes", str(status)).inc()
        retry_after = float((error.headers or {}).get("Retry-After") or 0) if error.headers else 0.0
        if status == 410:
            return Expired(f"cluster `{self.name}`: the {what} list expired (410)", status=410)
        if status == 404:
            if "could not find the requested resource" in (error.body or ""):
                return ClusterError(f"cluster `{self.name}` has no {what} API (is that Flux controller installed there?)",
                                    status=404)
            return ClusterError(f"{what} not found on cluster `{self.name}`", status=404)
        if status in (401, 403):
            return ClusterError(f"cluster `{self.name}` refused fluxbot ({status} on {what}): check its credentials "
                                "and RBAC (the Helm chart's Role and ClusterRole say what fluxbot needs)", status=status)
        return ClusterError(f"cluster `{self.name}` answered {status} {error.reason}", status=status,
                            retry_after=retry_after)


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential(multiplier=policy.initial, max=policy.longest) + wait_random(0, policy.initial)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = getattr(error, "retry_after", 0.0) or 0.0  # 429's Retry-After wins when given
        return min(policy.longest, max(hinted, backoff(state)))

    return wait


def _log_retry(cluster: str, what: str) -> Callable[[RetryCallState], None]:
    def log_it(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("cluster %s: %s on %s, retrying (attempt %d)", cluster, error, what, state.attempt_number)

    return log_it
