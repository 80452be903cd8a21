"""After a promotion or rollback merges: ask Flux to reconcile the chain, follow it, tell the thread.

One follow per merged change, stored so it resumes after a restart. No thread per follow: one
dispatcher re-evaluates a cluster's follows whenever its shared informers change (and once a
second for deadlines); reconcile requests run on a small pool. The verdict is `bot.kube.chain`'s.
Posts: applied (or recovered, after a reported failure), failed with a Roll back button carrying
from/to, the source cannot fetch the tag (with its cause, at once), suspended, superseded by a
newer merge to the same cluster, or not applied by the deadline. An unreachable cluster is a
message; other clusters keep working.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable

from bot.kube import chain, flux
from bot.kube.chain import Objects, Target, Verdict
from bot.kube.client import ClusterError, FluxCluster
from bot.kube.informers import ClusterInformers, Informers
from bot.metrics import RECONCILE_SECONDS, RECONCILES
from bot.store import Store
from commands.model import CommandError, Message, PullRequest
from commands.pinchange import branch_name, is_newer
from commands.rollback import rollback_target

log = logging.getLogger(__name__)

_DEFAULT_INTERVAL = "10m"  # what the flux CLI writes for a bootstrap's flux-system Kustomization


@dataclass
class Follow:
    id: int
    cluster: str
    target: Target
    channel: str
    thread_ts: str
    started: float
    requested: int = 0  # 0: nothing asked, 1: the source, 2: the source and its Kustomization
    running: str = ""  # the revision Flux ran when the follow began: what a roll back returns to
    reported: str = ""  # 'failed' / 'suspended' / 'retrying' once posted
    deadline: float | None = None
    stamp: str = ""  # the requestedAt value set on the source, to wait for lastHandledReconcileAt
    asked: tuple[str, str] = ("", "")  # that source
    asking: bool = False  # a request is in flight on the pool
    confirmed: float = 0.0  # when "applied" was last confirmed with fresh reads


class ReconcileFollower:
    def __init__(self, bot: Any, store: Store, clusters: dict[str, FluxCluster], notifier: Any,
                 clock: Callable[[], float] = time.time, timeout: float | None = None,
                 informers: Informers | None = None, tick: float = 1.0) -> None:
        self.bot = bot
        self.store = store
        self.clusters = clusters
        self.notifier = notifier
        self.clock = clock
        self.timeout = timeout  # overrides the budget worked out from the chain (tests)
        self.tick = tick
        self.informers = informers or getattr(bot, "informers", None) or Informers(clusters)
        self.informers.listen(self._poke)
        self._follows: dict[int, Follow] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._dirty: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reconcile-request")
        self._thread: threading.Thread | None = None
        # Several replicas: only the leader follows (`bot.leader`); the others record follows for it.
        self.leading: Callable[[], bool] = lambda: True

    # -- starting -------------------------------------------------------------------------------

    def on_merged(self, pr: PullRequest) -> None:
        """Merge hook: follow promotions and rollbacks on their cluster."""
        if pr.kind not in ("promotion", "rollback") or not pr.cluster:
            return
        tag = tag_of(pr)
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
        # from the store, not this replica's memory: the leader may be another replica
        for older in [self._follow_of(r) for r in self.store.open_follows() if r["cluster"] == pr.cluster]:
            self._finish(older, "superseded", Message(
                f"No longer following {older.target.tag} on {older.cluster}", tone="info",
                lines=(f"superseded by PR #{pr.number}, which moves {pr.cluster} to {tag}",)))
        follow_id = self.store.add_follow(pr.cluster, flux.revision(version.tag, version.commit), version.tag,
                                          cluster.backref.name, cluster.kustomization or "infrastructure",
                                          thread["channel"], thread["thread_ts"], self.clock(), merge=pr.merge_commit)
        if self.leading():
            self._add(self.store.follow(follow_id))

    def resume(self) -> None:
        """After a restart, or on becoming the leader (and then now and again, for follows other
        replicas recorded): follow what is open in the store and not followed here yet."""
        with self._lock:
            here = set(self._follows)
        for row in self.store.open_follows():
            if row["id"] not in here:
                self._add(row)

    def pause(self) -> None:
        """No longer the leader: stop following here; the follows stay open for the next leader."""
        with self._lock:
            self._follows.clear()

    def _follow_of(self, row: Any) -> Follow:
        namespace = self.clusters[row["cluster"]].namespace if row["cluster"] in self.clusters else "flux-system"
        return Follow(row["id"], row["cluster"],
                      Target(namespace, row["source"], row["kustomization"], row["tag"], row["expected"], row["merge"]),
                      row["channel"], row["thread_ts"], row["started"], int(row["requested"] or 0),
                      row["running"], row["reported"])

    def _add(self, row: Any) -> None:
        follow = self._follow_of(row)
        with self._lock:
            self._follows[follow.id] = follow
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="reconcile-follower", daemon=True)
                self._thread.start()
        self._poke(follow.cluster)

    def _open(self) -> list[Follow]:
        with self._lock:
            return list(self._follows.values())

    def wait(self, timeout: float = 30) -> None:
        """Until every follow has ended (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._open() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        with self._lock:
            self._follows.clear()
        self._poke("")
        self._pool.shutdown(wait=False)

    # -- the dispatcher -------------------------------------------------------------------------

    def _poke(self, cluster: str) -> None:
        with self._wake:
            self._dirty.add(cluster)
            self._wake.notify()

    def _loop(self) -> None:
        last_pass = 0.0
        while True:
            with self._wake:
                if not self._dirty:
                    self._wake.wait(self.tick)
                dirty, self._dirty = self._dirty, set()
            with self._lock:
                if not self._follows:
                    self._thread = None
                    return
                follows = list(self._follows.values())
            if time.monotonic() - last_pass >= self.tick:
                last_pass = time.monotonic()  # every follow once a tick (deadlines) ...
            else:
                follows = [f for f in follows if f.cluster in dirty]  # ... else the changed clusters' only
            for follow in follows:
                try:
                    self._step(follow)
                except Exception:
                    log.exception("following the reconcile of %s failed", follow.cluster)
                    self._finish(follow, "error", Message(f"Stopped following the reconcile of {follow.cluster}",
                                                          tone="warning", lines=("an internal error; see fluxbot's log",)))

    def _step(self, follow: Follow) -> None:
        informers = self.informers.of(follow.cluster)
        now = self.clock()
        if not informers.synced:
            problem = informers.errors()
            if problem and (not informers.informers or _permanent(problem) or now - follow.started > 60):
                self._finish(follow, "error", Message(f"Cannot follow the reconcile of {follow.cluster}", tone="warning",
                                                      lines=(problem, "other clusters are not affected")))
            return
        objects = informers.snapshot()
        if follow.deadline is None:
            owner = chain._owner(objects, objects.get(flux.GITREPOSITORIES, follow.target.namespace,
                                                      follow.target.source))
            follow.target = replace(follow.target, owner_before=str(((owner or {}).get("status") or {}).get(
                "lastAppliedRevision", "")))
        verdict = chain.evaluate(follow.target, objects)
        if follow.deadline is None:
            follow.deadline = follow.started + (self.timeout if self.timeout is not None
                                                else budget(follow.target, objects))
        if not follow.running and verdict.running:
            follow.running = verdict.running
            self.store.update_follow(follow.id, running=verdict.running)
        if verdict.state == "suspended":
            self._report_once(follow, "suspended", Message(
                f"Flux will not apply {follow.target.tag} on {follow.cluster}", tone="warning",
                lines=(verdict.summary, "fluxbot did not ask it to reconcile (as `flux reconcile` refuses a suspended "
                                        "object); resume it with `flux resume`, and this thread hears of the outcome")))
        else:
            self._request(follow, objects)
        if verdict.state == "applied" and (_consistent(informers, verdict) or self._confirmed(follow, objects, verdict)):
            self._applied(follow, verdict)
            return
        if verdict.state == "failed" and not verdict.retrying:
            if follow.reported != "failed":  # the button reads the repo: only when it is posted
                self._report_once(follow, "failed", self._failure(follow, verdict),
                                  self._rollback_button(follow, verdict))
        elif verdict.retrying:
            self._report_once(follow, "retrying", Message(
                f"Flux is retrying {follow.target.tag} on {follow.cluster}", tone="info",
                lines=(verdict.summary, f"{verdict.failing}: {verdict.message}",
                       "not a failure yet: Flux retries it by itself")))
        if now < follow.deadline:
            return
        if follow.reported == "failed":
            self._finish(follow, "failed", None)
        elif verdict.retrying or verdict.state == "failed":
            self._count(follow, "failed")
            self._finish(follow, "failed", self._failure(follow, verdict, deadline=True),
                         self._rollback_button(follow, verdict))
        else:
            self._count(follow, "timeout")
            self._finish(follow, "timeout", Message(
                f"{follow.cluster} has not applied {follow.target.tag} yet", tone="warning",
                lines=(f"still {verdict.summary} after {int(now - follow.started)} s",
                       # no slash commands in threads: a mention works there
                       f"`@fluxbot status {follow.cluster}` in this thread shows the live state")))

    def _confirmed(self, follow: Follow, objects: Objects, verdict: Verdict) -> bool:
        """Read the objects "applied" rests on afresh (GET is current; the caches of other kinds
        may lag until their next event or bookmark) and judge again."""
        now = time.monotonic()
        if now - follow.confirmed < 1.0:
            return False  # at most once a second per follow
        follow.confirmed = now
        fresh = {plural: dict(items) for plural, items in objects.items.items()}
        try:
            for obj in verdict.decisive:
                plural = flux.PLURAL_OF_KIND[obj["kind"]]
                namespace, name = flux.key_of(obj)
                current = self.clusters[follow.cluster].get(plural, name, namespace)
                if current is None:
                    return False
                fresh[plural][(namespace, name)] = current
        except ClusterError as error:
            log.info("confirming %s on %s: %s", follow.target.tag, follow.cluster, error)
            return False
        return chain.evaluate(follow.target, Objects(fresh)).state == "applied"

    # -- asking Flux to reconcile, the way `flux reconcile ks --with-source` does -----------------

    def _request(self, follow: Follow, objects: Objects) -> None:
        if follow.requested >= 2 or follow.asking:
            return
        source, kustomization = request_pair(follow.target, objects)
        if source is None or kustomization is None:
            return
        if follow.requested == 1 and follow.stamp and flux.key_of(source) != follow.asked:
            # the owner applied the merge meanwhile: the infrastructure source has a new generation,
            # which source-controller reconciles at once, and its Kustomization follows the artifact
            follow.requested = 2
            self.store.update_follow(follow.id, requested=2)
            return
        if follow.requested == 1:
            handled = ((source.get("status") or {}).get("lastHandledReconcileAt", ""))
            if follow.stamp and handled != follow.stamp:
                return  # source first: the Kustomization is asked once the source handled its request
            plural, obj = flux.KUSTOMIZATIONS, kustomization
        else:
            plural, obj = flux.GITREPOSITORIES, source
        follow.asking = True
        self._pool.submit(self._ask, follow, plural, *flux.key_of(obj))

    def _ask(self, follow: Follow, plural: str, namespace: str, name: str) -> None:
        try:
            stamp = self.clusters[follow.cluster].request_reconcile(plural, name, namespace)
            if plural == flux.GITREPOSITORIES:
                follow.stamp, follow.asked = stamp, (namespace, name)
            follow.requested += 1
        except ClusterError as error:
            follow.requested = 2  # Flux still applies at its interval; say why it may take longer
            self._post(follow, Message(f"Could not ask Flux on {follow.cluster} to reconcile now", tone="warning",
                                       lines=(str(error), "Flux applies the change at its own interval; "
                                                          "fluxbot goes on following")))
        finally:
            self.store.update_follow(follow.id, requested=follow.requested)
            follow.asking = False
            self._poke(follow.cluster)

    # -- outcomes -------------------------------------------------------------------------------

    def _applied(self, follow: Follow, verdict: Verdict) -> None:
        took = int(self.clock() - follow.started)
        self._count(follow, "applied")
        recovered = follow.reported == "failed"
        self._finish(follow, "applied", Message(
            f"{follow.cluster} runs {follow.target.tag}" + (": recovered" if recovered else ""), tone="success",
            lines=(f"Flux applied `{follow.target.expected}` in {took} s",)
            + (("the failure reported above recovered: Flux retried and succeeded",) if recovered else ())))

    def _failure(self, follow: Follow, verdict: Verdict, deadline: bool = False) -> Message:
        if verdict.source_failure:
            return Message(f"Flux cannot fetch {follow.target.tag} for {follow.cluster}", tone="error",
                           lines=(verdict.summary, f"{verdict.failing}: {verdict.message}",
                                  "fluxbot goes on following: once the cause is fixed, this thread hears of it"))
        return Message(f"Reconcile of {follow.cluster} to {follow.target.tag} failed", tone="error",
                       lines=(verdict.summary.removeprefix("retrying: "), f"{verdict.failing}: {verdict.message}")
                       + ((f"still failing after {int(self.clock() - follow.started)} s, Flux's own time "
                           "budget for it",) if deadline else ()))

    def _rollback_button(self, follow: Follow, verdict: Verdict) -> list[dict[str, Any]] | None:
        """Roll back to an older release that ran healthy: Flux's lastAppliedRevision when it is older
        than the failing tag, else fluxbot's record of the last applied follow, else the rollback
        command's own choice. The value fixes from/to (`<cluster> from <tag> to <older>`), so a click
        after the pin moved is refused, not re-planned; a rollback never moves forward."""
        repo = self.bot.snapshot()
        cluster = repo.cluster(follow.cluster)
        known = [flux.revision_parts(r)[0] for r in (verdict.running, follow.running) if r]
        row = self.store.last_applied_follow(follow.cluster)
        known += [row["tag"]] if row is not None else []
        target = next((t for t in known if repo.version(t) is not None and is_newer(follow.target.tag, t)), "")
        if not target and cluster is not None:
            try:
                target = rollback_target(repo, cluster, follow.target.tag).tag
            except CommandError:
                return None  # nothing older to go back to
        if not target:
            return None
        return [{"type": "button", "action_id": "fluxbot_rollback", "style": "danger",
                 "value": f"{follow.cluster} from {follow.target.tag} to {target}",
                 "text": {"type": "plain_text", "text": f"Roll back to {target}"}}]

    def _report_once(self, follow: Follow, what: str, message: Message,
                     actions: list[dict[str, Any]] | None = None) -> None:
        if follow.reported == what or (what == "retrying" and follow.reported == "failed"):
            return
        follow.reported = what
        self.store.update_follow(follow.id, reported=what)
        if what == "failed":
            self._count(follow, "failed")
        self._post(follow, message, actions)

    def _count(self, follow: Follow, outcome: str) -> None:
        RECONCILES.labels(outcome=outcome).inc()
        RECONCILE_SECONDS.labels(outcome=outcome).observe(self.clock() - follow.started)

    def _post(self, follow: Follow, message: Message, actions: list[dict[str, Any]] | None = None) -> None:
        self.notifier.post(follow.channel, message, follow.thread_ts, actions=actions)

    def _finish(self, follow: Follow, state: str, message: Message | None,
                actions: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self._follows.pop(follow.id, None)
        # Post once: only the call that moves the follow out of `following` posts.
        if self.store.end_follow(follow.id, state) and message is not None:
            self._post(follow, message, actions)


def tag_of(pr: PullRequest) -> str:
    """The tag a promotion or rollback branch names (`fluxbot/promote-prod-eu-v1.0.0-rc.1`)."""
    prefix = branch_name(pr.kind, pr.cluster, "")
    return pr.branch[len(prefix):] if pr.branch.startswith(prefix) else pr.branch.rsplit("-", 1)[-1]


def request_pair(target: Target, objects: Objects) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What to ask to reconcile: the owner's source and Kustomization while the merge has not
    reached the infrastructure GitRepository (re-fetching its old tag would be useless), else the
    infrastructure GitRepository and Kustomization."""
    source = objects.get(flux.GITREPOSITORIES, target.namespace, target.source)
    owner = chain._owner(objects, source)
    tag = ((((source or {}).get("spec") or {}).get("ref")) or {}).get("tag")
    if owner is not None and (tag != target.tag or not chain._owner_applied(target, owner)):
        return chain._source_of(objects, owner), owner
    return source, objects.get(flux.KUSTOMIZATIONS, target.namespace, target.kustomization)


def budget(target: Target, objects: Objects) -> float:
    """How long Flux itself may take: the owner's and the source's intervals, then the timeouts of
    the Kustomization chain (`timeout` unset means `interval`), dependsOn in sequence, and of the
    HelmReleases (helm-controller's default timeout is 5m)."""
    source = objects.get(flux.GITREPOSITORIES, target.namespace, target.source)
    owner = chain._owner(objects, source)
    total = _seconds((owner or {}).get("spec", {}).get("interval", _DEFAULT_INTERVAL))
    total += _seconds(((source or {}).get("spec") or {}).get("interval", "1m"))
    tree = chain._applied_tree(objects, target.namespace, target.kustomization)
    kustomizations = {flux.key_of(o): o for o in tree if o.get("kind") == "Kustomization"}
    depth: dict[tuple[str, str], float] = {}

    def chain_time(key: tuple[str, str], seen: frozenset[tuple[str, str]] = frozenset()) -> float:
        if key in depth:
            return depth[key]
        spec = kustomizations[key].get("spec") or {}
        own = _seconds(spec.get("timeout") or spec.get("interval", "5m"))
        deps = [(d.get("namespace") or key[0], d["name"]) for d in spec.get("dependsOn") or []]
        before = max((chain_time(d, seen | {key}) for d in deps if d in kustomizations and d not in seen), default=0.0)
        depth[key] = own + before
        return depth[key]

    total += max((chain_time(k) for k in kustomizations), default=_seconds("5m"))
    releases = [o for o in tree if o.get("kind") == "HelmRelease"]
    total += max((_seconds((r.get("spec") or {}).get("timeout", "5m")) for r in releases), default=0.0)
    return total


def _seconds(duration: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    total, number = 0.0, ""
    for char in str(duration):
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total, number = total + float(number) * units[char], ""
    return total or 300.0


def _permanent(problem: str) -> bool:
    return any(code in problem for code in ("(401", "(403", "no ", "cannot load"))


def _consistent(informers: ClusterInformers, verdict: Verdict) -> bool:
    """Every cache has caught up with the objects "applied" rests on. Kinds are watched apart, so a
    Kustomization may be seen Ready before the HelmRelease it just changed; resourceVersions are
    etcd revisions, and the watches' bookmarks move every cache past them."""
    seen = informers.seen_up_to()
    try:
        newest = max(int((o.get("metadata") or {}).get("resourceVersion", 0)) for o in verdict.decisive)
    except ValueError:
        return True
    return seen is None or seen >= newest
