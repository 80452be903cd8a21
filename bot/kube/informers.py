"""Informers: one list+watch per cluster and Flux kind, a cache every follow and `status` share.

Like client-go's reflector: list (paged), then watch from the list's resourceVersion with
bookmarks; a watch that ends (server timeout, dropped connection, the client-side read timeout)
is resumed from the last resourceVersion seen; 410 Gone relists *and applies the listed items*
(objects deleted meanwhile disappear); 429/5xx back off and retry. Caches are replaced, never
mutated in place, under a lock, so readers on other threads get consistent copies.
Kustomizations and GitRepositories are watched in the Flux namespace; HelmReleases cluster-wide
but only those a Kustomization applied (the `kustomize.toolkit.fluxcd.io/name` label selector).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from bot.kube import flux
from bot.kube.chain import Objects
from bot.kube.client import ClusterError, Expired, FluxCluster

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Informer:
    """One kind on one cluster: a thread keeping `items` in step with the API server."""

    def __init__(self, cluster: FluxCluster, plural: str, on_change: Callable[[], None], *,
                 all_namespaces: bool = False, label_selector: str = "", watch_timeout: int = 60,
                 backoff: float = 0.5, longest: float = 30.0) -> None:
        self.cluster, self.plural = cluster, plural
        self.all_namespaces, self.label_selector = all_namespaces, label_selector
        self.watch_timeout = watch_timeout
        self._backoff, self._longest = backoff, longest
        self._on_change = on_change
        self._lock = threading.Lock()
        self._items: dict[Key, dict[str, Any]] = {}
        self.resource_version = ""  # the newest one seen (events and bookmarks)
        self.synced = threading.Event()  # the first list is in
        self.error = ""  # the last failure, '' once it works again
        self.relists = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{cluster.name}-{plural}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end; an open watch is cut so it need not wait for its timeout."""
        self._stop.set()
        self.cluster.cancel_watches(self)

    def join(self, timeout: float) -> bool:
        """Wait for a stopped thread to end; False if it is still inside a call after `timeout`."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def items(self) -> dict[Key, dict[str, Any]]:
        with self._lock:
            return dict(self._items)  # objects are replaced, never mutated: a shallow copy is a snapshot

    def _run(self) -> None:
        version, failures = "", 0
        while not self._stop.is_set():
            try:
                if not version:
                    items, version = self.cluster.list(self.plural, self.all_namespaces, self.label_selector,
                                                       cancel=self._stop)
                    self._replace(items, version)
                for kind, obj in self.cluster.watch(self.plural, version, self.watch_timeout, self.all_namespaces,
                                                    self.label_selector, owner=self):
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    self._apply(kind, obj, version)
                    if self._stop.is_set():
                        return
                failures = 0
            except Expired:
                version = ""  # relist: the list replaces the cache, so deletions in between are seen
                self.relists += 1
            except ClusterError as error:
                if self._stop.is_set() or error.closed:
                    return  # stopped (or the cluster closed) while a call was failing: nothing to report
                failures += 1
                self.error = str(error)
                wait = max(error.retry_after, min(self._longest, self._backoff * 2 ** min(failures, 10)))
                log.warning("informer %s/%s: %s; again in %.1f s", self.cluster.name, self.plural, error, wait)
                self._on_change()
                self._stop.wait(wait)
            except Exception:  # a bug must not kill the informer silently
                log.exception("informer %s/%s failed", self.cluster.name, self.plural)
                version = ""
                self._stop.wait(self._longest)

    def _replace(self, items: list[dict[str, Any]], version: str) -> None:
        with self._lock:
            self._items = {flux.key_of(o): o for o in items}
            self.resource_version = version
        self.error = ""
        self.synced.set()
        self._on_change()

    def _apply(self, kind: str, obj: dict[str, Any], version: str) -> None:
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                self._items = {**self._items, flux.key_of(obj): obj}
            elif kind == "DELETED":
                self._items = {k: v for k, v in self._items.items() if k != flux.key_of(obj)}
            self.resource_version = version  # BOOKMARK: only this moves
        self.error = ""
        self._on_change()


class ClusterInformers:
    """The three Flux kinds of one cluster (HelmReleases only where helm-controller is installed)."""

    def __init__(self, cluster: FluxCluster, on_change: Callable[[str], None], watch_timeout: int = 60,
                 backoff: float = 0.5, longest: float = 30.0) -> None:
        self.cluster = cluster
        self.informers: dict[str, Informer] = {}
        self.error = ""
        notify = lambda: on_change(cluster.name)  # noqa: E731
        try:
            kinds = [p for p in flux.KINDS if cluster.version(p) is not None]
        except ClusterError as error:
            self.error = str(error)
            kinds = []
        for plural in kinds:
            cluster_wide = plural == flux.HELMRELEASES
            self.informers[plural] = Informer(cluster, plural, notify, all_namespaces=cluster_wide,
                                              label_selector=flux.OWNER_NAME_LABEL if cluster_wide else "",
                                              watch_timeout=watch_timeout, backoff=backoff, longest=longest).start()

    @classmethod
    def stopped(cls, cluster: FluxCluster) -> ClusterInformers:
        """No informers, and an error that says why: what readers get once fluxbot is stopping."""
        none = cls.__new__(cls)
        none.cluster, none.informers, none.error = cluster, {}, f"cluster `{cluster.name}`: fluxbot is stopping"
        return none

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in self.informers.values())

    @property
    def synced(self) -> bool:
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers.values())

    def errors(self) -> str:
        return self.error or "; ".join(sorted({i.error for i in self.informers.values() if i.error}))

    def snapshot(self) -> Objects:
        return Objects({plural: informer.items() for plural, informer in self.informers.items()})

    def seen_up_to(self) -> int | None:
        """The resourceVersion every kind's cache has caught up with (None where not numeric)."""
        try:
            return min(int(i.resource_version) for i in self.informers.values())
        except ValueError:
            return None

    def stop(self) -> None:
        for informer in self.informers.values():
            informer.stop()

    def join(self, deadline: float) -> bool:
        return all([i.join(max(0.0, deadline - time.monotonic())) for i in self.informers.values()])


class Informers:
    """One ClusterInformers per cluster, started on first use and shared by every reader."""

    def __init__(self, clusters: dict[str, FluxCluster], watch_timeout: int = 60, retry_discovery: float = 10,
                 backoff: float = 0.5, longest: float = 30.0) -> None:
        self.clusters = clusters
        self.backoff, self.longest = backoff, longest
        self.watch_timeout = watch_timeout
        self.retry_discovery = retry_discovery
        self._lock = threading.Lock()
        self._running: dict[str, ClusterInformers] = {}
        self._stopped = False  # for good: a late reader must not start threads again
        self._tried: dict[str, float] = {}
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def _changed(self, cluster: str) -> None:
        for listener in list(self._listeners):
            listener(cluster)

    def of(self, name: str) -> ClusterInformers:
        with self._lock:
            if self._stopped:
                return ClusterInformers.stopped(self.clusters[name])
            running = self._running.get(name)
            stale = running is not None and running.error and not running.informers
            if running is None or (stale and time.monotonic() - self._tried.get(name, 0) > self.retry_discovery):
                # discovery failed last time (unreachable): try again, but not on every call
                self._tried[name] = time.monotonic()
                running = self._running[name] = ClusterInformers(self.clusters[name], self._changed, self.watch_timeout,
                                                                    self.backoff, self.longest)
            return running

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop every informer and wait up to `timeout` for their threads; False if some are still busy."""
        with self._lock:
            running, self._running = list(self._running.values()), {}
            self._stopped = True
        for each in running:
            each.stop()
        deadline = time.monotonic() + timeout
        return all([each.join(deadline) for each in running])
