"""After a promotion or rollback merges: ask Flux to reconcile, watch, and report the outcome.

One follow per merged change, stored in SQLite so it resumes after a restart. It watches (list,
then watch from the resourceVersion) the cluster's GitRepository and Kustomizations and the
HelmReleases they manage, re-evaluates on every event with `commands.reconcile.evaluate`, and posts
into the request's thread only when the outcome is known: applied, failed (with a Roll back
button), or timed out. An unreachable cluster is a message, and other clusters keep working.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from bot.cluster import ClusterError, FluxCluster
from bot.metrics import RECONCILE_SECONDS, RECONCILES
from bot.store import Store
from commands.model import Message, PullRequest
from commands.reconcile import FluxState, evaluate, expected_revision, seconds
from commands.rollback import rollback_target

log = logging.getLogger(__name__)

_MANAGED_BY = "kustomize.toolkit.fluxcd.io/name"


@dataclass
class _Objects:
    """The latest copy of every watched object, fed by watcher threads (an informer, in short)."""

    source_name: str = ""
    kustomization_name: str = ""
    source: dict[str, Any] | None = None
    kustomization: dict[str, Any] | None = None
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def managed(self, source: str, kustomization: str) -> list[dict[str, Any]]:
        kustomizations = {k: v for k, v in self.children.items()
                          if ((v.get("spec") or {}).get("sourceRef") or {}).get("name") == source and k != kustomization}
        owners = set(kustomizations) | {kustomization}
        releases = [r for r in self.releases.values() if ((r.get("metadata") or {}).get("labels") or {}).get(_MANAGED_BY) in owners]
        return list(kustomizations.values()) + releases


class ReconcileFollower:
    def __init__(self, bot: Any, store: Store, clusters: dict[str, FluxCluster], notifier: Any,
                 clock: Callable[[], float] = time.time, timeout: float | None = None) -> None:
        self.bot = bot
        self.store = store
        self.clusters = clusters
        self.notifier = notifier
        self.clock = clock
        self.timeout = timeout  # overrides the Kustomization's timeout + interval (tests)
        self.threads: list[threading.Thread] = []

    # starting ---------------------------------------------------------------------------------

    def on_merged(self, pr: PullRequest) -> None:
        """Merge hook: follow promotions and rollbacks on their cluster."""
        if pr.kind not in ("promotion", "rollback") or not pr.cluster:
            return
        tag = pr.branch.rsplit("-", 1)[-1]
        snapshot = self.bot.snapshot()
        version, cluster = snapshot.version(tag), snapshot.cluster(pr.cluster)
        thread = self.store.thread_for(self.bot.forge.name, pr.number)
        if version is None or cluster is None or cluster.backref is None or thread is None:
            return
        if pr.cluster not in self.clusters:
            self.notifier.post(thread["channel"], Message(
                f"Not following the reconcile of {pr.cluster}", tone="info",
                lines=(f"no connection to cluster `{pr.cluster}` is configured (`clusters.{pr.cluster}.context`)",)),
                thread["thread_ts"])
            return
        follow_id = self.store.add_follow(pr.cluster, expected_revision(version.tag, version.commit), version.tag,
                                          cluster.backref.name, cluster.kustomization or "infrastructure",
                                          thread["channel"], thread["thread_ts"], self.clock())
        self._spawn(follow_id)

    def resume(self) -> None:
        """After a restart: go on following what was being followed."""
        for row in self.store.open_follows():
            self._spawn(row["id"])

    def _spawn(self, follow_id: int) -> None:
        thread = threading.Thread(target=self._run_safely, args=(follow_id,), name=f"follow-{follow_id}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def wait(self, timeout: float = 30) -> None:
        for thread in list(self.threads):
            thread.join(timeout)

    # following --------------------------------------------------------------------------------

    def _run_safely(self, follow_id: int) -> None:
        row = self.store.follow(follow_id)
        try:
            self._run(row)
        except ClusterError as error:
            self._finish(row, "error", Message(f"Cannot follow the reconcile of {row['cluster']}", tone="warning",
                                               lines=(str(error), "other clusters are not affected")))
        except Exception:
            log.exception("following the reconcile of %s failed", row["cluster"])
            self._finish(row, "error", Message(f"Stopped following the reconcile of {row['cluster']}", tone="warning",
                                               lines=("an internal error; see fluxbot's log",)))

    def _run(self, row: Any) -> None:
        cluster = self.clusters[row["cluster"]]
        if not row["requested"]:
            cluster.request_reconcile(row["source"], row["kustomization"])
            self.store.follow_requested(row["id"])
        objects, changed, stop = _Objects(row["source"], row["kustomization"]), queue.Queue[None](), threading.Event()
        versions = self._load(cluster, objects)
        deadline = row["started"] + (self.timeout if self.timeout is not None else self._timeout(objects))
        # Each watch starts at the resourceVersion of its list, so no change in between is missed.
        watchers = [threading.Thread(target=self._watch, args=(cluster, plural, objects, changed, stop, every, versions[plural]),
                                     daemon=True)
                    for plural, every in (("gitrepositories", False), ("kustomizations", False), ("helmreleases", True))]
        for watcher in watchers:
            watcher.start()
        try:
            while True:
                state = evaluate(row["expected"], objects.source, objects.kustomization,
                                 objects.managed(row["source"], row["kustomization"]))
                if state.state != "progressing":
                    self._report(row, state)
                    return
                remaining = deadline - self.clock()
                if remaining <= 0:
                    self._finish(row, "timeout", Message(
                        f"{row['cluster']} has not applied {row['tag']} yet", tone="warning",
                        lines=(f"still {state.summary} after {int(self.clock() - row['started'])} s",
                               f"`@fluxbot status {row['cluster']}` in this thread shows the live state")))  # no slash commands in threads
                    RECONCILES.labels(outcome="timeout").inc()
                    RECONCILE_SECONDS.labels(outcome="timeout").observe(self.clock() - row["started"])
                    return
                try:
                    changed.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    pass
        finally:
            stop.set()

    def _load(self, cluster: FluxCluster, objects: _Objects) -> dict[str, str]:
        """List the three kinds; their resourceVersions, for the watches to start from."""
        versions = {}
        for plural, every in (("gitrepositories", False), ("kustomizations", False), ("helmreleases", True)):
            items, versions[plural] = cluster.list(plural, all_namespaces=every)
            for item in items:
                self._apply(plural, "ADDED", item, objects)
        return versions

    def _watch(self, cluster: FluxCluster, plural: str, objects: _Objects, changed: queue.Queue[None],
               stop: threading.Event, all_namespaces: bool, version: str) -> None:
        while not stop.is_set():
            try:
                if not version:
                    _, version = cluster.list(plural, all_namespaces)
                for kind, obj in cluster.watch(plural, version, timeout=5, all_namespaces=all_namespaces):
                    if stop.is_set():
                        return
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    self._apply(plural, kind, obj, objects)
                    changed.put(None)
            except ClusterError as error:
                log.warning("watching %s: %s", plural, error)
                version = ""  # list again: the resourceVersion may be too old now
                stop.wait(2)

    @staticmethod
    def _apply(plural: str, kind: str, obj: dict[str, Any], objects: _Objects) -> None:
        meta = obj.get("metadata") or {}
        gone = kind == "DELETED"
        if plural == "gitrepositories":
            if meta.get("name") == objects.source_name:
                objects.source = None if gone else obj
        elif plural == "kustomizations":
            if gone:
                objects.children.pop(meta.get("name"), None)
            else:
                objects.children[meta["name"]] = obj
            if meta.get("name") == objects.kustomization_name:
                objects.kustomization = None if gone else obj
        else:
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if gone:
                objects.releases.pop(key, None)
            else:
                objects.releases[key] = obj

    @staticmethod
    def _timeout(objects: _Objects) -> float:
        spec = (objects.kustomization or {}).get("spec") or {}
        return seconds(spec.get("timeout", ""), 300) + seconds(spec.get("interval", ""), 300)

    def _report(self, row: Any, state: FluxState) -> None:
        took = int(self.clock() - row["started"])
        if state.state == "applied":
            RECONCILES.labels(outcome="applied").inc()
            RECONCILE_SECONDS.labels(outcome="applied").observe(self.clock() - row["started"])
            self._finish(row, "applied", Message(f"{row['cluster']} runs {row['tag']}", tone="success",
                                                 lines=(f"Flux applied `{row['expected']}` in {took} s",)))
            return
        RECONCILES.labels(outcome="failed").inc()
        RECONCILE_SECONDS.labels(outcome="failed").observe(self.clock() - row["started"])
        self._finish(row, "failed", Message(
            f"Reconcile of {row['cluster']} to {row['tag']} failed", tone="error",
            lines=(state.summary, f"{state.failing}: {state.message}")),
            actions=[self._rollback_button(row["cluster"], row["tag"])])

    def _rollback_button(self, cluster: str, tag: str) -> dict[str, Any]:
        """The Roll back button, its from/to fixed now: a click after the pin moved is refused, not re-planned."""
        value, label = f"{cluster} from {tag}", "Roll back"
        try:
            repo = self.bot.snapshot()
            target = rollback_target(repo, repo.cluster(cluster), tag).tag
            value, label = f"{value} to {target}", f"Roll back to {target}"
        except Exception:  # no older release, or the repo unreadable: the click gets the refusal
            log.info("no rollback target to offer for %s at %s", cluster, tag)
        return {"type": "button", "action_id": "fluxbot_rollback", "value": value, "style": "danger",
                "text": {"type": "plain_text", "text": label}}

    def _finish(self, row: Any, state: str, message: Message, actions: list[dict[str, Any]] | None = None) -> None:
        # Post once: only the call that moves the follow out of `following` posts.
        if self.store.end_follow(row["id"], state):
            self.notifier.post(row["channel"], message, row["thread_ts"], actions=actions)
