"""The application service: one chat request in, the messages to send back out.

Transports (shell, Slack) call `FluxBot.handle`; it checks permissions, reads the repo, asks the
pure planner in `commands/`, and carries the resulting plans out through the workspace and the
forge. Every request ends in a response and an audit record, whatever fails.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
from contextlib import contextmanager
import time
import uuid
from datetime import date
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from bot.kube import live
from bot.kube.chain import Target
from bot.kube.client import ClusterError
from bot.kube.informers import Informers
from bot.failpoints import failpoint
from bot.metrics import COMMAND_SECONDS, COMMANDS, JOURNAL_GIVEN_UP, PRS_OPENED
from bot.forge.base import Forge, ForgeError, ForgeUnavailable
from bot.store import Row, Store, StoreUnavailable
from bot.git.workspace import MergeConflict, OriginUnavailable, Workspace, WorkspaceError
from commands.bounds import MAX_BODY_CHARS, MAX_COMMIT_CHARS, bounded
from commands.context import CommandSpec, Context
from commands.freeze import freeze_refusal
from commands.impact import impact
from commands.model import person, AlreadyOpen, AuditEntry, ChangePlan, CommandError, FreezeAction, ReconcileAction, Link, Message, PrAction, PullRequest
from commands.layout import Layout
from commands.release import tag_of_release_branch
from commands.permissions import Policy, decide
from commands.plan import ShowCheck
from commands.registry import COMMANDS as _REGISTRY, error_message, parse
from commands.repo import RepoSnapshot

Claimed = tuple[list[Row], list[Row]]  # (due again, given up): journal rows

log = logging.getLogger(__name__)
_VERBS = set(_REGISTRY) | {"flux"}


@dataclass(frozen=True)
class Request:
    """One chat request, as a transport hands it over (identity is the transport's verified ID)."""

    text: str
    user: str
    channel: str = ""
    groups: frozenset[str] = frozenset()
    confirm_risky: bool = False  # the transport can ask before touching a productive cluster
    confirmed: bool = False  # ...and the requester already said yes
    thread_ts: str = ""  # where the transport answers (Slack thread), for recovery after a crash


@dataclass
class Response:
    messages: list[Message] = field(default_factory=list)
    confirmation: Message | None = None  # ask the requester first; nothing was written
    prs: list[PullRequest] = field(default_factory=list)  # opened (or found open) by this request
    request_id: int = 0  # the journal entry; the transport calls `finish` once the answer is out
    pending: bool = False  # the forge or git host is down: the request stays journalled and is retried
    fixed_text: str = ""  # the request with its decision fixed (from/to), for a confirmation to run later
    retry_after: float = 0.0  # ...and asked to be left alone this many seconds (a rate limit)


@dataclass
class FluxBot:
    workspace: Workspace
    forge: Forge
    store: Store
    productive_overrides: Mapping[str, bool] = field(default_factory=dict)
    policy: Policy = field(default_factory=lambda: Policy(trusted=True))
    merge_hooks: list[Callable[[PullRequest], None]] = field(default_factory=list)  # e.g. follow the reconcile
    clusters: dict[str, Any] = field(default_factory=dict)  # name -> FluxCluster, for reconcile and live status
    release_requires_green: str = ""
    # The rendered check is posted as a PR comment (`bot.prcheck`, wired with the GitHub webhook):
    # the body then leaves out the static checklist.
    checks_in_comment: bool = False
    # Set by the change gate: why PR n may not merge now ('' when it may) and the head commit to merge.
    merge_guard: Callable[[int], tuple[str, str]] | None = None
    layout: Layout = field(default_factory=Layout)
    informers: Informers | None = None  # made from `clusters` on first use (see `kube()`)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # How long a claimed request is left alone by other replicas; renewed while it runs (heartbeat)
    lease_seconds: float = 120.0
    _working: dict[int, int] = field(default_factory=dict, repr=False)  # request id -> runs here now
    _heartbeat: threading.Thread | None = field(default=None, repr=False)

    def snapshot(self) -> RepoSnapshot:
        return RepoSnapshot(self.workspace.reader(), self.productive_overrides, self.layout)

    def handle(self, text: str, user: str) -> list[Message]:
        """Run `text` for `user` and return the replies (callers that print later use `respond`)."""
        response = self.respond(Request(text, user))
        self.finish(response)
        return response.messages

    def respond(self, request: Request, request_id: int = 0) -> Response:
        """Run one chat request; never raises, always answers, always audits.

        The request is journalled first; until the transport calls `finish`, a restart runs it
        again (`recover`). Every step is idempotent (deterministic branches, the open-PR check),
        so a re-run ends with the same single PR.
        """
        started = time.perf_counter()
        if not request_id:
            try:
                request_id = self.store.begin_request(request.user, request.text, request.channel, request.thread_ts,
                                                      sorted(request.groups), request.confirmed, time.time(),
                                                      in_flight=self.lease_seconds)
            except StoreUnavailable as error:
                # not journalled means not done: nothing may happen that a restart could not account for
                log.error("request refused: %s", error)
                return Response([Message("fluxbot cannot take requests right now", tone="error", lines=(
                    str(error), "nothing was done; try again in a minute"))])
        with self._leased(request_id):
            response = self._respond(request, request_id)
        response.request_id = request_id
        verb = request.text.split()[0].lower().lstrip("/") if request.text.split() else ""
        denied = any(m.title.startswith("you may not run") for m in response.messages)  # _authorize's refusal
        outcome = ("confirm" if response.confirmation else "deferred" if response.pending else "denied" if denied else
                   "error" if any(m.tone == "error" for m in response.messages) else "ok")
        label = verb if verb in _VERBS else "other"
        COMMANDS.labels(verb=label, outcome=outcome).inc()
        COMMAND_SECONDS.labels(verb=label, outcome=outcome).observe(time.perf_counter() - started)
        log.info("request", extra={"request_id": request_id, "user_id": request.user, "action": verb,
                                   "outcome": outcome, "prs": [pr.number for pr in response.prs]})
        return response

    @contextmanager
    def _leased(self, request_id: int) -> Iterator[None]:
        """While the request runs here, its lease is renewed, so no other replica takes it over."""
        with self._locks_guard:
            self._working[request_id] = self._working.get(request_id, 0) + 1
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="journal-heartbeat", daemon=True)
                self._heartbeat.start()
        try:
            yield
        finally:
            with self._locks_guard:
                self._working[request_id] -= 1
                if not self._working[request_id]:
                    del self._working[request_id]

    def _beat(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            with self._locks_guard:
                working = list(self._working)
                if not working:
                    self._heartbeat = None  # the next request starts another
                    return
            for request_id in working:
                try:
                    self.store.extend_lease(request_id, time.time() + self.lease_seconds)
                except StoreUnavailable:
                    log.warning("cannot renew the lease of request %d; another replica may take it over", request_id)

    def finish(self, response: Response) -> None:
        """The answer reached the user: the journal entry is done (or, if pending, the user knows it waits)."""
        failpoint("before-finish")
        if not response.request_id:
            return
        if response.pending:
            self.store.defer_request(response.request_id, time.time() + response.retry_after if response.retry_after else 0)
        else:
            self.store.finish_request(response.request_id)

    def recover(self, everything: bool = False, now: float | None = None,
                max_attempts: int = 10, limit: int = 0) -> list[tuple[Request, Response]]:
        """Run again the requests that are due: left unanswered by a crash or an outage, or waiting
        for the forge. The transport delivers and finishes them. `everything`: at start."""
        return self.rerun(self.claim(everything, now, max_attempts, limit))

    def claim(self, everything: bool = False, now: float | None = None, max_attempts: int = 10, limit: int = 0) -> Claimed:
        """The journalled requests due now, and those given up, claimed (no later claim returns them).
        `fluxbot serve` claims before it listens, so a new request is never run twice at start."""
        return self.store.unanswered_requests(time.time() if now is None else now, everything, max_attempts,
                                              limit=limit)

    def rerun(self, claimed: Claimed) -> list[tuple[Request, Response]]:
        """Run claimed requests again; given-up ones get their last word."""
        due, abandoned = claimed
        JOURNAL_GIVEN_UP.inc(len(abandoned))
        recovered = []
        for row in abandoned:
            recovered.append((_journalled(row), Response([Message(
                f"Gave up on `{row['text']}` after {row['attempts']} retries", tone="error",
                lines=("the forge or the git host did not come back in time, or Slack did not take the answer",
                       "nothing was changed by it; ask again once they are back"))])))
        for row in due:
            response = self.respond(_journalled(row), row["id"])
            if response.pending and row["notified"]:
                response.messages = []  # still down, and the user already knows it waits
            recovered.append((_journalled(row), response))
        return recovered

    def _respond(self, request: Request, request_id: int = 0) -> Response:
        text, user = request.text, request.user
        spec: CommandSpec | None = None
        touched: tuple[str, ...] = ()
        try:
            spec, command = parse(text)
            touched = self._touched(spec, command)
            response = self._run(spec, command, request, request_id)
        except AlreadyOpen as error:
            if not (request_id and error.pr and self._opened_for(request_id, error.pr)):
                self.store.audit(user, text, "ok", touched, reason=error.what)
                return Response([error_message(error)])
            # this very request opened it before its process stopped (a crash, a replica that died):
            # its answer is the one the first run would have given
            self.store.audit(user, text, "ok", touched)
            pr = error.pr
            return Response([Message(f"Opened: PR #{pr.number} {pr.title}", links=(Link(f"PR #{pr.number}", pr.url),),
                                     context=f"requested by {person(request.user)}", tone="success")], prs=[pr])
        except CommandError as error:
            self.store.audit(user, text, "refused" if error.tone == "error" else "ok", touched, reason=error.what)
            return Response([error_message(error)])
        except (OriginUnavailable, ForgeUnavailable) as error:
            if spec is None or not spec.proposes:
                self.store.audit(user, text, "failed", touched, reason=str(error))
                return Response([Message(str(error), lines=("nothing was changed; try again later",), tone="error")])
            self.store.audit(user, text, "deferred", touched, reason=str(error))
            self._fix_while_waiting(spec, command, request, request_id)
            return Response([Message(str(error), tone="warning", lines=(
                "fluxbot keeps this request and tries it again, less and less often, for about an hour",
                "nothing was changed yet; the answer will be posted here"))], pending=True,
                retry_after=float(getattr(error, "retry_after", 0) or 0))
        except (WorkspaceError, ForgeError) as error:
            self.store.audit(user, text, "failed", touched, reason=str(error))
            return Response([Message(str(error), lines=("nothing was changed; try again, or check the repository",), tone="error")])
        except Exception:
            incident = uuid.uuid4().hex[:8]
            log.exception("command failed (incident %s, user %s)", incident, user)
            self.store.audit(user, text, "error", touched, incident=incident)
            return Response([Message(f"fluxbot hit an internal error (incident {incident})",
                                     lines=("nothing was changed; the incident id is in fluxbot's log",), tone="error")])
        outcome = "awaiting confirmation" if response.confirmation else "ok"
        touched = tuple(dict.fromkeys(touched + tuple(pr.cluster for pr in response.prs if pr.cluster)))
        self.store.audit(user, text, outcome, touched, replies=[m.title for m in response.messages],
                         prs=[pr.number for pr in response.prs])
        return response

    def _run(self, spec: CommandSpec, command: Any, request: Request, request_id: int = 0) -> Response:
        open_prs: Any = _OnDemand(self.forge.open_prs)  # asked only by commands that read it
        self._authorize(spec, command, request, open_prs)
        freezes = self.store.freezes()
        if spec.action and (refusal := freeze_refusal(freezes, spec.verb, spec.targets(command))):
            raise refusal
        ctx = Context(self.snapshot(), request.user, open_prs, date.today().isoformat(), freezes, self._audit_entries,
                      self.live, self.release_requires_green)
        fixed = spec.fixed(command, ctx) if spec.fixed else ""
        if fixed and request_id:
            # Before anything is pushed: a re-run after a crash or an outage acts on this decision.
            self.store.fix_request_text(request_id, fixed)
        outcome = spec.run(command, ctx)
        if isinstance(outcome, Message):
            return Response([outcome])
        if isinstance(outcome, FreezeAction):
            return Response([self._freeze(outcome, request.user)])
        if isinstance(outcome, ReconcileAction):
            return Response([self._reconcile(outcome)])
        if isinstance(outcome, PrAction):
            return Response([self._act_on_pr(outcome, request.user)])
        if isinstance(outcome, ShowCheck):
            from bot.fleetcheck import pr_check_message  # renders: only imported when asked

            return Response([pr_check_message(self.workspace, self.forge, outcome)])
        if request.confirm_risky and not request.confirmed and any(p.productive for p in outcome):
            return Response(confirmation=_confirmation(outcome, request), fixed_text=fixed)
        response = Response()
        for plan in outcome:
            pr, message = self.open_change(plan, request.user, request.channel, request.thread_ts, request_id)
            response.prs.append(pr)
            response.messages.append(message)
        return response

    def _touched(self, spec: CommandSpec, command: Any) -> tuple[str, ...]:
        """The clusters a request is about, for the audit's own column (a PR's cluster for merges)."""
        if isinstance(command, PrAction):
            try:
                pr = self.forge.get(command.number)
            except Exception:  # the forge may be down; the audit still records the request
                return ()
            return (pr.cluster,) if pr is not None and pr.cluster else ()
        return tuple(spec.targets(command))

    def _fix_while_waiting(self, spec: CommandSpec, command: Any, request: Request, request_id: int) -> None:
        """The forge is down: fix the decision now if the repo can be read, so the retry acts on it."""
        if spec.fixed is None or not request_id:
            return
        try:
            fixed = spec.fixed(command, Context(self.snapshot(), request.user))
        except Exception:  # the git host may be down too, or the request is refused: the retry says so
            return
        self.store.fix_request_text(request_id, fixed)

    def _authorize(self, spec: CommandSpec, command: Any, request: Request, open_prs: tuple[PullRequest, ...]) -> None:
        targets = spec.targets(command)
        if isinstance(command, PrAction):
            targets = self._pr_clusters(command.number, open_prs)
        action = None if isinstance(command, ShowCheck) else spec.action  # `pr show` only reads
        decision = decide(self.policy, action, targets, request.user, request.groups, request.channel)
        if not decision.allowed:
            raise CommandError(f"you may not run `{spec.verb}` here", decision.reason)

    def _pr_clusters(self, number: int, open_prs: tuple[PullRequest, ...]) -> tuple[str, ...]:
        """Every cluster PR `number`'s real diff touches, from the forge's changed files (labels
        are display only); past the forge's file cap, every cluster. The local forge's own record
        otherwise (it writes PRs only from plans)."""
        changed_files = getattr(self.forge, "changed_files", None)
        if changed_files is None:
            return tuple(pr.cluster for pr in open_prs if pr.number == number)
        changed = changed_files(number)
        snapshot = self.snapshot()
        if changed.capped:
            return tuple(sorted(snapshot.cluster_names))
        return impact(changed.paths, snapshot).clusters

    def open_change(self, plan: ChangePlan, user: str, channel: str = "", thread_ts: str = "",
                    request_id: int = 0) -> tuple[PullRequest, Message]:
        """Push the plan's branch and open its PR; a branch whose PR failed is deleted again.

        Serialised per cluster: identical requests arriving together (a double click, retries)
        all plan before any PR exists, and only the first may push; the rest find its PR.
        """
        with self._cluster_lock(plan.cluster):
            return self._open_change(plan, user, channel, thread_ts, request_id)

    def _cluster_lock(self, cluster: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(cluster, threading.Lock())

    def _open_change(self, plan: ChangePlan, user: str, channel: str, thread_ts: str,
                     request_id: int) -> tuple[PullRequest, Message]:
        existing = self.forge.find_open(plan.branch)
        if existing is not None:
            return existing, _pr_message(existing, plan, "This change is already open")
        plan = dataclasses.replace(plan, commit_message=bounded(plan.commit_message, MAX_COMMIT_CHARS, "message"))
        pushed = self.workspace.push_change(plan)
        failpoint("after-push")
        # GitHub refuses bodies over 65,536 characters: the checks' report is kept, the planned text cut.
        report = pushed.report.markdown() if pushed.report.lines and not self.checks_in_comment else ""
        report = bounded(report, MAX_BODY_CHARS // 2, "report")
        plan = dataclasses.replace(plan, body=bounded(plan.body, MAX_BODY_CHARS - len(report), "description") + report)
        # Before the PR exists: GitHub delivers `opened` while the create call is still in flight,
        # and the gate must find who asked (never the bot account, never a label).
        self.store.record_intent(self.forge.name, plan.branch, pushed.commit, user, plan.cluster, plan.kind,
                                 channel, thread_ts, request_id)
        try:
            pr = self.forge.create(plan, pushed.commit, user)
        except BaseException:
            self.workspace.delete_branch(plan.branch)
            raise
        failpoint("after-pr")
        PRS_OPENED.labels(kind=plan.kind).inc()
        return pr, _pr_message(pr, plan, "Opened")

    def _opened_for(self, request_id: int, pr: PullRequest) -> bool:
        """Whether `pr` was pushed by an earlier run of this journalled request (a repeat is not a re-run)."""
        intent = self.store.branch_intent(self.forge.name, pr.branch)
        return intent is not None and intent["request_id"] == request_id

    def _audit_entries(self) -> list[AuditEntry]:
        return [AuditEntry(r["at"], r["user"], r["command"], r["outcome"], tuple(c for c in r["clusters"].split(",") if c))
                for r in self.store.audit_log(200)]

    def _freeze(self, action: FreezeAction, user: str) -> Message:
        if action.action == "freeze":
            self.store.set_freeze(action.target, action.reason, user)
            return Message(f"Froze {action.target}: {action.reason}", tone="warning",
                           lines=("write commands are refused until `unfreeze`; `rollback` still works",))
        self.store.clear_freeze(action.target)
        return Message(f"Unfroze {action.target}", tone="success")

    def tag_release(self, pr: PullRequest) -> str | None:
        """After a release PR merged: tag its merge commit; the tag, or None for other PRs.

        A forge that can tag (GitHub) tags there: the mirror may not have fetched the merge commit."""
        tag = tag_of_release_branch(pr.branch)
        if tag is None or not pr.merge_commit:
            return None
        tagger = getattr(self.forge, "tag", None) or self.workspace.tag
        tagger(pr.merge_commit, tag, f"infrastructure {tag}")
        return tag

    def merged(self, pr: PullRequest) -> tuple[bool, str, str]:
        """A PR merged (here, or on the forge): run the merge hooks and tag a release, once per PR
        whichever of the chat merge and the `closed` webhook comes first.

        Returns (ran now, the tag made, why tagging failed); one hook failing does not stop the rest."""
        if not self.store.first_delivery("merged", f"{self.forge.name}:{pr.number}"):
            return False, "", ""
        for hook in self.merge_hooks:
            try:
                hook(pr)
            except Exception:
                log.exception("merge hook failed for PR #%s", pr.number)
        try:
            return True, self.tag_release(pr) or "", ""
        except (ForgeError, WorkspaceError) as error:
            log.error("tagging the merge of PR #%s failed: %s", pr.number, error)
            return True, "", str(error)

    def _reconcile(self, action: ReconcileAction) -> Message:
        cluster = self.clusters.get(action.cluster)
        if cluster is None:
            raise CommandError(f"fluxbot has no connection to cluster `{action.cluster}`",
                               f"configure `clusters.{action.cluster}.context` (or `in_cluster: true`) in fluxbot.yaml")
        target = self._chain_target(action.cluster)
        try:
            lines = live.reconcile_now(self.kube(), cluster, target)
        except (ClusterError, live.NotReachable) as error:
            raise CommandError(str(error), "nothing was changed on the cluster") from None
        return Message(f"Asked Flux on {action.cluster} to reconcile", tone="success", lines=tuple(lines))

    def close(self) -> None:
        """Let go of what the process holds: cluster watches and informer threads end, the forge's
        and the database's connections and the mirror's git processes close. Called at shutdown."""
        for cluster in self.clusters.values():
            getattr(cluster, "close", lambda: None)()  # tests may pass plain stand-ins
        with self._locks_guard:
            informers, self.informers = self.informers, None
        if informers is not None:
            informers.stop()
        getattr(self.forge, "disconnect", lambda: None)()  # only remote forges hold connections
        self.workspace.close()
        self.store.close()  # pooled database connections (reopened if anything still writes)

    def kube(self) -> Informers:
        """The informers shared by `status`, the release gate and the follower (one per cluster and kind)."""
        with self._locks_guard:
            if self.informers is None or self.informers.clusters is not self.clusters:
                self.informers = Informers(self.clusters)
            return self.informers

    def _chain_target(self, name: str) -> Target:
        repo_cluster = self.snapshot().cluster(name)
        source = repo_cluster.backref.name if repo_cluster and repo_cluster.backref else "infrastructure"
        pin = repo_cluster.pin if repo_cluster else None
        return Target(self.clusters[name].namespace, source, (repo_cluster.kustomization if repo_cluster else "")
                      or "infrastructure", pin.value if pin is not None and pin.kind == "tag" else "", "")

    def live(self, name: str) -> dict[str, Any] | None:
        """The cluster's infrastructure chain for `status` and the release gate, or {'error': ...};
        None without a connection."""
        if name not in self.clusters or self.snapshot().cluster(name) is None:
            return None
        return live.summary(self.kube(), name, self._chain_target(name))

    def _act_on_pr(self, action: PrAction, user: str) -> Message:
        if action.action == "merge":
            head = ""
            if self.merge_guard is not None:
                refusal, head = self.merge_guard(action.number)
                if refusal:
                    raise CommandError(f"PR #{action.number} cannot be merged yet: {refusal}",
                                       "it merges once the change gate is green for its newest commit")
            try:
                pr = self.forge.merge(action.number, user, head) if head else self.forge.merge(action.number, user)
            except MergeConflict as conflict:
                raise self._stale(action.number, user, conflict) from None
            _ran, tag, tag_error = self.merged(pr)
            lines = ((f"tagged the merge commit `{pr.merge_commit[:12]}` as `{tag}`",) if tag else ()) + (
                (f"but the release tag was not made: {tag_error}",) if tag_error else ())
            return Message(f"Merged PR #{pr.number}: {pr.title}", links=(Link(f"PR #{pr.number}", pr.url),),
                           lines=lines, tone="warning" if tag_error else "success")
        pr = self.forge.close(action.number, user)
        return Message(f"Closed PR #{pr.number}: {pr.title}", lines=(f"branch {pr.branch} deleted",))


    def _stale(self, number: int, user: str, conflict: MergeConflict) -> CommandError:
        """A PR that conflicts with main can never merge: say what main has now, close it as stale
        (which frees its cluster for a new change), and say so."""
        pr = self.forge.get(number)
        cluster = self.snapshot().cluster(pr.cluster) if pr and pr.cluster else None
        lines = []
        for path in conflict.files:
            line = f"main changed {path} meanwhile"
            if cluster is not None and cluster.backref is not None and cluster.backref.path == path and cluster.pin:
                line += f": `spec.ref.{cluster.pin.kind}` is `{cluster.pin.value}` on main now"
            lines.append(line)
        mark = getattr(self.forge, "mark_stale", None)
        if mark is not None:
            mark(number, user)
            freed = f"PR #{number} is marked stale and closed; `{pr.cluster}` is free for a new change" if pr else ""
        else:
            freed = f"close PR #{number}, then ask again"
        return CommandError(f"PR #{number} cannot merge: " + ("; ".join(lines) or str(conflict)),
                            "; ".join(x for x in (freed, "check `status`, then ask again if the change is still wanted") if x))


class _OnDemand(Sequence[PullRequest]):
    """The open PRs, listed from the forge the first time a command reads them (most never do)."""

    def __init__(self, load: Callable[[], list[PullRequest]]) -> None:
        self._load, self._items = load, None  # type: ignore[assignment]

    def _all(self) -> tuple[PullRequest, ...]:
        if self._items is None:
            self._items = tuple(self._load())
        return self._items

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())


def _journalled(row: Any) -> Request:
    return Request(row["text"], row["user"], row["channel"], frozenset(json.loads(row["groups"])),
                   confirm_risky=bool(row["channel"]), confirmed=bool(row["confirmed"]), thread_ts=row["thread_ts"])


def _confirmation(plans: tuple[ChangePlan, ...], request: Request) -> Message:
    productive = [p.cluster for p in plans if p.productive]
    return Message(
        f"Confirm: {request.text.strip()}",
        lines=tuple(f"{p.title}: `{p.from_version}` -> `{p.to_version}`" + (" (productive)" if p.productive else "")
                    for p in plans),
        fields=(("Productive clusters", ", ".join(productive)), ("Requested by", f"<@{request.user}>")),
        context="Only the requester can confirm. Nothing is written until then.",
        tone="warning",
    )


def _pr_message(pr: PullRequest, plan: ChangePlan, verb: str) -> Message:
    return Message(
        f"{verb}: PR #{pr.number} {pr.title}",
        lines=plan.notes,
        fields=tuple(field for field in (
            ("Cluster", plan.cluster),
            ("Change", f"{plan.from_version} -> {plan.to_version}" if plan.from_version else plan.to_version),
            ("Productive", "yes: the change gate applies" if plan.productive else "no"),
            ("Branch", plan.branch),
        ) if field[1]),
        links=(Link(f"PR #{pr.number}", pr.url),),
        context=f"requested by {person(pr.author)}",
        tone="success",
    )
