"""The change gate and PR notifications: GitHub events in, gate verdicts and thread messages out.

Decisions come from `commands.impact` and `commands.gate`; this module stores gates (so a restart
loses nothing), reports the gate (`bot.github.checks`), asks approvers in the change channel and
posts every event about a PR into the thread of the request that opened it, once.

Trust: who asked, for which cluster and which kind of change comes from fluxbot's own record made
before the PR was opened (`Store.record_intent`), matched by head branch and the exact commit
fluxbot pushed; the clusters come from the PR's real changed files. Labels are display only.

Who calls it: `bot.github.webhooks` (GitHub events), `bot.slack` (Approve / Reject clicks), and
the server at start (`catch_up`) and periodically (`sweep`).
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from functools import lru_cache
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bot.config import GateSettings
from bot.forge.base import ForgeError
from bot.github import checks
from bot.github import vocabulary as gh
from bot.github.forge import ChangedFiles
from bot.metrics import GATE_DECISIONS
from bot.service import FluxBot
from bot.store import Store
from commands.gate import approval_refusal, open_verdict
from commands.impact import Impact, impact
from commands.model import Link, Message, PullRequest
from commands.repo import RepoSnapshot

log = logging.getLogger(__name__)

_QUEUE_REF = re.compile(r"gh-readonly-queue/.+/pr-(?P<number>\d+)-(?P<sha>[0-9a-f]{40})$")


class Notifier(Protocol):
    """What the gate needs from chat (Slack implements it)."""

    def post(self, channel: str, message: Message, thread_ts: str | None = None, *,
             actions: list[dict[str, Any]] | None = None, notify: tuple[str, ...] = (),
             when_posted: tuple[Any, ...] = ()) -> str | None: ...

    def replace(self, channel: str, ts: str | None, message: Message) -> None: ...

    def members(self, group: str) -> frozenset[str]: ...


@dataclass
class ChangeGate:
    bot: FluxBot
    store: Store
    notifier: Notifier
    settings: GateSettings
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        # `pr merge` from chat asks the gate: green? which commit?
        self.bot.merge_guard = self.merge_refusal

    @property
    def forge(self) -> Any:
        return self.bot.forge

    # GitHub events ----------------------------------------------------------------------------

    def on_event(self, event: str, payload: dict[str, Any]) -> None:
        """Dispatch one webhook event (already verified); events of other repositories are ignored."""
        repository = str((payload.get("repository") or {}).get("full_name", ""))
        if repository.lower() != self.forge.repository.lower():
            log.info("ignored a github %s event of another repository (%s)", event, repository or "none")
            return
        handler = {
            gh.PULL_REQUEST: self._on_pull_request,
            gh.PULL_REQUEST_REVIEW: self._on_review,
            gh.CHECK_RUN: self._on_check_run,
            gh.STATUS: self._on_status,
            gh.PUSH: self._on_push,
            gh.MERGE_GROUP: self._on_merge_group,
        }.get(event)
        if handler is not None:
            handler(payload)

    def _on_pull_request(self, payload: dict[str, Any]) -> None:
        action, pull = payload.get("action"), payload["pull_request"]
        number = int(pull["number"])
        if action in ("opened", "reopened", "synchronize"):
            # who opened or pushed: four eyes on hand-made PRs compares them with the approver
            self.store.add_pr_people(self.forge.name, number, [(payload.get("sender") or {}).get("login", "")])
        retarget = action == gh.EDITED and "base" in (payload.get("changes") or {})
        if action in gh.REEVALUATE_ACTIONS or retarget:
            reason = {"synchronize": "new commits pushed", "edited": "the base branch changed"}.get(str(action), "")
            self.evaluate(number, reason=reason)
        elif action == gh.CLOSED:
            if pull.get("merged") is True:
                self._on_merged(number, pull)
            else:
                self.notify(number, "closed", Message(f"PR #{number} closed without merging"))
                self.store.settle_thread(self.forge.name, number)

    def _on_merged(self, number: int, pull: dict[str, Any]) -> None:
        merge_commit = str(pull.get("merge_commit_sha") or "")
        self.notify(number, "merged", Message(f"PR #{number} merged", tone="success",
                                              lines=(f"merge commit `{merge_commit[:12]}`",)))
        self._check_bypass(number, str((pull.get("head") or {}).get("sha", "")),
                           str((pull.get("merged_by") or {}).get("login", "") or ""))
        merged_pr = self.forge.get(number)
        ran, tag, tag_error = self.bot.merged(merged_pr)
        if tag:
            self.notify(number, f"tag-{tag}", Message(f"Tagged the merge commit as {tag}", tone="success"))
        if tag_error:
            self.notify(number, "tag-failed", Message("The release tag was not made", tone="error",
                                                      lines=(tag_error, "tag the merge commit by hand, or ask again")))
        self.store.settle_thread(self.forge.name, number)

    def _check_bypass(self, number: int, head: str, merged_by: str) -> None:
        """A merge while the gate was not green for the merged commit is a bypass: say so and audit it."""
        gate = self.store.gate(self.forge.name, number)
        if gate is not None and gate["head"] == head and gate["state"] == "success":
            return
        if gate is None:
            try:
                result = self._impact(self.forge.changed_files(number))
            except ForgeError as error:
                log.warning("could not read the files of merged PR #%s: %s", number, error)
                return
            if not result.gated:
                return
            clusters = result.productive
        else:
            clusters = tuple(json.loads(gate["clusters"]))
            if gate["head"] == head and gate["state"] == "success":
                return
        state = gate["state"] if gate is not None and gate["head"] == head else "never gated for this commit"
        self._bypass(f"PR #{number} merged while the change gate was {state}", merged_by,
                     (f"clusters: {', '.join(clusters)}", f"merged commit `{head[:12]}`"), number=number, head=head)

    def _bypass(self, title: str, by: str, lines: tuple[str, ...], number: int = 0, **detail: Any) -> None:
        message = Message(f"Change gate bypassed: {title}", tone="error",
                          lines=lines + (f"by {by or 'unknown'}; this is recorded in the audit log",))
        self.store.audit(by or "github", f"bypass: {title}", "bypass", **detail)
        if number:
            self.notify(number, f"bypass-{detail.get('head', '')}", message)
        if self.settings.change_channel:
            self.notifier.post(self.settings.change_channel, message)

    def _on_review(self, payload: dict[str, Any]) -> None:
        review, number = payload["review"], int(payload["pull_request"]["number"])
        state, who = str(review.get("state", "")).lower(), review["user"]["login"]
        if state == "approved":
            self.notify(number, f"review-{review['id']}", Message(f"Review: approved by {who}", tone="success"))
        elif state == "changes_requested":
            self.notify(number, f"review-{review['id']}", Message(f"Review: changes requested by {who}", tone="warning"))

    def _on_check_run(self, payload: dict[str, Any]) -> None:
        run = payload["check_run"]
        if run.get("status") != "completed" or run.get("conclusion") not in gh.FAILED_CONCLUSIONS:
            return
        for pull in run.get("pull_requests") or []:
            self.notify(int(pull["number"]), f"check-{run['id']}",
                        Message(f"Check `{run['name']}` {run['conclusion']}", tone="error",
                                links=(Link("details", run.get("html_url") or ""),) if run.get("html_url") else ()))

    def _on_status(self, payload: dict[str, Any]) -> None:
        sha, state = str(payload.get("sha", "")), payload.get("state")
        if payload.get("context") == gh.GATE_CONTEXT:
            self._on_gate_status(sha, str(state), str((payload.get("sender") or {}).get("login", "")))
            return
        if state not in ("failure", "error"):
            return
        for row in self.store.gates_for_head(self.forge.name, sha):
            self.notify(row["number"], f"status-{payload['id']}",
                        Message(f"Status `{payload['context']}` {payload['state']}", tone="error",
                                lines=(payload.get("description") or "",)))

    def _on_gate_status(self, sha: str, state: str, sender: str) -> None:
        """A `fluxbot/change-gate: success` fluxbot did not write (anyone with push access can post
        one with a token): put fluxbot's own verdict back and raise the alarm."""
        if state != "success":
            return
        for gate in self.store.gates_for_head(self.forge.name, sha):
            if gate["state"] == "success":
                continue
            checks.report(self.forge, sha, gate["state"], gate["description"])
            self._bypass(f"a forged `{gh.GATE_CONTEXT}` success on PR #{gate['number']}", sender,
                         (f"commit `{sha[:12]}`; fluxbot's verdict is {gate['state']} and was put back",),
                         number=gate["number"], head=sha)

    def _on_push(self, payload: dict[str, Any]) -> None:
        """A push to the default branch that changes a productive cluster without a merged PR."""
        default = str((payload.get("repository") or {}).get("default_branch", "main"))
        after = str(payload.get("after", ""))
        if payload.get("ref") != f"refs/heads/{default}" or payload.get("deleted") or not after.strip("0"):
            return
        paths = [p for c in payload.get("commits") or [] for key in ("added", "removed", "modified") for p in c.get(key) or []]
        result = self._impact(ChangedFiles(tuple(paths), capped=bool(payload.get("forced"))))
        if not result.gated or self.forge.merged_pulls_of(after):
            return
        pusher = str((payload.get("sender") or {}).get("login", "") or (payload.get("pusher") or {}).get("name", ""))
        self._bypass(f"a direct push to {default} changes productive {', '.join(result.productive)}", pusher,
                     (f"commit `{after[:12]}`, no pull request" + (" (a force push)" if payload.get("forced") else ""),),
                     head=after)

    def _on_merge_group(self, payload: dict[str, Any]) -> None:
        """Answer a merge queue with the gate of the PR it queued, on the group's head commit."""
        if payload.get("action") != gh.CHECKS_REQUESTED:
            return
        group = payload["merge_group"]
        m = _QUEUE_REF.search(str(group.get("head_ref", "")))
        gate = self.store.gate(self.forge.name, int(m["number"])) if m else None
        if gate is not None and m is not None and gate["head"] == m["sha"] and gate["state"] == "success":
            state, description = "success", f"PR #{gate['number']}: {gate['description']}"
        else:
            state, description = "failure", "the queued PR's change gate is not green for its commit"
        checks.report(self.forge, str(group["head_sha"]), state, description[:gh.STATUS_DESCRIPTION_MAX])

    # the gate ---------------------------------------------------------------------------------

    def _impact(self, files: ChangedFiles, snapshot: RepoSnapshot | None = None) -> Impact:
        snapshot = snapshot or self.bot.snapshot()
        if files.capped:
            # GitHub lists at most MAX_PR_FILES: the rest is unknown, so every cluster counts.
            names = tuple(sorted(snapshot.cluster_names))
            return Impact(names, tuple(n for n in names if snapshot.cluster(n).productive))
        return impact(files.paths, snapshot)

    def merge_refusal(self, number: int) -> tuple[str, str]:
        """Why PR `number` may not merge from chat ('' if it may), and the gated head commit."""
        facts = self.forge.facts(number)
        gate = self.store.gate(self.forge.name, number)
        if gate is None or gate["head"] != facts.head_sha or gate["base"] not in ("", facts.base_ref):
            return f"the change gate has not judged its newest commit `{facts.head_sha[:7]}` yet", ""
        if gate["state"] != "success":
            return f"the change gate is {gate['state']} ({gate['description']})", ""
        return "", gate["head"]

    def evaluate(self, number: int, reason: str = "") -> None:
        """(Re)gate a PR's current head commit against its current base: impact, verdict, report."""
        pull = self.forge.facts(number)
        if pull.state != "open":
            return
        previous = self.store.gate(self.forge.name, number)
        if (previous is not None and previous["head"] == pull.head_sha and previous["base"] == pull.base_ref
                and previous["state"] != "closed"):  # a reopened PR is gated anew
            if not previous["reported"]:  # the last report failed: a status is retried, never skipped
                self._report(number, pull.head_sha, previous["state"], previous["description"])
            return  # this commit is gated already (a redelivery, a label, a catch-up)
        files = self.forge.changed_files(number, pull.changed_files)
        result = self._impact(files)
        exact = self.store.intent(self.forge.name, pull.head_ref, pull.head_sha)
        intent = exact or self.store.branch_intent(self.forge.name, pull.head_ref)
        # Only the exact commit fluxbot pushed carries the kind it was asked for; commits pushed on
        # top make it an ordinary change (an "emergency rollback" must not carry extra changes).
        kind = exact["kind"] if exact is not None else "change"
        people = set(self.store.pr_people(self.forge.name, number)) | {pull.author}
        if intent is not None:
            people -= {pull.author}  # fluxbot's own account opened it
        requester = intent["requester"] if intent is not None else ""
        if intent is not None and intent["channel"] and intent["thread_ts"]:
            self.store.link_thread(self.forge.name, number, intent["channel"], intent["thread_ts"], requester)
        verdict = open_verdict(result, kind, self.settings.policy)
        now = self.clock()
        self.store.save_gate(self.forge.name, number, pull.head_sha, verdict.state, verdict.description,
                             list(result.clusters), kind, requester, json.dumps(sorted(people)), now,
                             now + self.settings.policy.expire_seconds, base=pull.base_ref)
        self._report(number, pull.head_sha, verdict.state, verdict.description)
        GATE_DECISIONS.labels(state="emergency" if verdict.emergency else verdict.state).inc()
        self.store.audit("fluxbot", f"gate PR #{number}", verdict.state, head=pull.head_sha, base=pull.base_ref,
                         clusters=result.clusters, emergency=verdict.emergency, requester=requester)
        model = PullRequest(number, pull.title, pull.url, pull.head_ref, "", kind, head=pull.head_sha,
                            opened_by=pull.author)
        self._ensure_thread(model, result.productive, requester)
        if previous is not None and previous["request_ts"] and previous["request_channel"] != "webhook":
            # The old card no longer applies: say so, and its buttons go (clicks on it are refused anyway).
            self.notifier.replace(previous["request_channel"], previous["request_ts"], Message(
                f"Change request for PR #{number} at `{previous['head'][:7]}` no longer applies", tone="info",
                lines=(f"the PR changed (`{pull.head_sha[:7]}` onto {pull.base_ref}); approval is asked anew",)))
        if files.capped:
            self.notify(number, f"capped-{pull.head_sha}", Message(
                f"PR #{number} changes {pull.changed_files} files, more than GitHub lists ({gh.MAX_PR_FILES})",
                tone="warning", lines=("fluxbot cannot see them all, so it counts as touching every productive"
                                       " cluster; split the PR to have its real impact judged",)))
        if reason and previous is not None:
            self.notify(number, f"sync-{pull.head_sha}-{pull.base_ref}", Message(
                f"PR #{number} changed: {reason} (`{pull.head_sha[:7]}` onto {pull.base_ref})",
                lines=("change approval reset: an approval is for the exact commit approved",) if verdict.needs_request else ()))
        if verdict.needs_request:
            self._request_approval(model, result.productive, requester or _people(people))
        else:
            self.notify(number, f"gate-{pull.head_sha}-{pull.base_ref}", Message(
                f"Change gate: {verdict.description}", tone="success" if verdict.state == "success" else "info"))
        if verdict.emergency and self.settings.change_channel:
            self.notifier.post(self.settings.change_channel, Message(
                f"Emergency change: {pull.title}", tone="warning", links=(Link(f"PR #{number}", pull.url),),
                lines=(f"expedited rollback of {', '.join(result.productive)}, requested by {_who(requester)}",
                       "recorded as an emergency change; no approval was waited for")))

    def _report(self, number: int, head: str, state: str, description: str) -> None:
        """Report the verdict; a failure is logged and retried by `sweep` (or the next event)."""
        try:
            checks.report(self.forge, head, state, description)
        except ForgeError as error:
            log.warning("reporting the gate of PR #%s failed, will retry: %s", number, error)
            return
        self.store.gate_reported(self.forge.name, number, head, state)

    def _request_approval(self, pull: PullRequest, productive: tuple[str, ...], requester: str) -> None:
        if self.settings.policy.provider == "webhook":
            self._request_by_webhook(pull, productive, requester)
            return
        channel = self.settings.change_channel
        if not channel:
            log.warning("PR #%s needs change approval but no gate.change_channel is configured", pull.number)
            return
        value = f"{pull.number}:{pull.head}"
        message = Message(
            f"Change request: {pull.title}"[:150], tone="warning",
            fields=(("Clusters", ", ".join(productive)), ("Commit", f"`{pull.head[:12]}`"),
                    ("Requested by", _who(requester)), ("Approvers", f"<!subteam^{self.settings.approvers_group}>")),
            links=(Link(f"PR #{pull.number}", pull.url),),
            context="Four eyes: the requester and the PR author cannot approve.",
        )
        # Only the approvers group is really mentioned; the card is retried until Slack takes it,
        # and its ts recorded then (`when_posted`), so the gate is never stuck without a card.
        ts = self.notifier.post(channel, message, actions=[
            {"type": "button", "action_id": "fluxbot_gate_approve", "value": value, "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "fluxbot_gate_reject", "value": value, "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}},
        ], notify=(self.settings.approvers_group,) if self.settings.approvers_group else (),
            when_posted=("gate", self.forge.name, pull.number, pull.head))
        if ts:
            self.store.gate_request_posted(self.forge.name, pull.number, pull.head, channel, ts)
        problem = "" if ts else getattr(self.notifier, "post_problem", lambda _channel: "")(channel) or "not taken"
        self.notify(pull.number, f"gate-{pull.head}", Message(
            f"Change gate: pending, awaiting approval in <#{channel}>", tone="info" if ts else "warning",
            lines=(f"for commit `{pull.head[:7]}`; changes productive {', '.join(productive)}",) + ((
                f"Slack did not take the change request in <#{channel}> yet ({problem}): invite fluxbot there "
                "(`/invite @fluxbot`); fluxbot keeps trying and posts it then",) if not ts else ())))

    def _request_by_webhook(self, pull: PullRequest, productive: tuple[str, ...], requester: str) -> None:
        """POST the change request to a ServiceNow-like system; its status URL is polled later."""
        request = {"pr": pull.number, "url": pull.url, "title": pull.title, "commit": pull.head,
                   "clusters": list(productive), "requester": requester, "repository": getattr(self.forge, "repository", "")}
        try:
            reply = _http().post(self.settings.webhook_url, json=request, headers=self._webhook_headers(), timeout=10)
            reply.raise_for_status()
            status_url = str(reply.json()["status_url"])
        except (requests.RequestException, KeyError, ValueError) as error:
            log.error("change request for PR #%s could not be filed: %s", pull.number, error.__class__.__name__)
            self.notify(pull.number, f"gate-{pull.head}", Message(
                "Change gate: pending, but the change system did not take the request", tone="error",
                lines=("fluxbot will not retry by itself; push a commit or re-run to file it again",)))
            return
        self.store.gate_request_posted(self.forge.name, pull.number, pull.head, "webhook", status_url)
        self.notify(pull.number, f"gate-{pull.head}", Message(
            "Change gate: pending, change request filed", tone="info",
            lines=(f"for commit `{pull.head[:7]}`; changes productive {', '.join(productive)}",)))

    def _webhook_headers(self) -> dict[str, str]:
        token = os.environ.get(self.settings.webhook_token_env, "") if self.settings.webhook_token_env else ""
        return {"Authorization": f"Bearer {token}"} if token else {}

    def poll(self) -> None:
        """Ask the change system about every pending webhook request; settle decided ones."""
        for gate in self.store.pending_gates():
            if gate["request_channel"] != "webhook" or not gate["request_ts"]:
                continue
            try:
                reply = _http().get(gate["request_ts"], headers=self._webhook_headers(), timeout=10)
                reply.raise_for_status()
                answer = reply.json()
            except (requests.RequestException, ValueError) as error:
                log.warning("polling the change request of PR #%s failed: %s", gate["number"], error.__class__.__name__)
                continue
            state = str(answer.get("state", "")).lower()
            if state not in ("approved", "rejected"):
                continue
            by = str(answer.get("by") or "the change system")
            verdict = "success" if state == "approved" else "failure"
            description = f"change {state} by {by}"
            if self.store.decide_gate(self.forge.name, gate["number"], gate["head"], verdict, description, by):
                self._report(gate["number"], gate["head"], verdict, description)
                self.store.audit(by, f"{state} PR #{gate['number']}", verdict, head=gate["head"], provider="webhook")
                self.notify(gate["number"], f"decision-{gate['head']}", Message(
                    f"Change {state} by {by}", tone="success" if verdict == "success" else "error"))

    def decide(self, value: str, approver: str, approve: bool) -> str:
        """An Approve / Reject click; returns what to tell the clicker ('' when it took effect)."""
        number_text, _, head = value.partition(":")
        gate = self.store.gate(self.forge.name, int(number_text))
        if gate is None or gate["head"] != head:
            return "This change request is for an older commit; the newest commit has its own request."
        if gate["state"] != "pending":
            return f"This change request was already decided ({gate['state']})."
        if self.clock() > gate["expires"]:
            self._expire(gate)
            return "This change request has expired; new commits or `/flux` will open a new one."
        refusal = approval_refusal(approver, self.notifier.members(self.settings.approvers_group),
                                   gate["requester"], frozenset(_logins(gate["author"])), self.settings.identities)
        if refusal:
            return f"You cannot decide this change request: {refusal}."
        state = "success" if approve else "failure"
        description = f"change {'approved' if approve else 'rejected'} by {approver}"
        if not self.store.decide_gate(self.forge.name, gate["number"], head, state, description, approver):
            return "This change request was already decided."
        self._report(gate["number"], head, state, description)
        GATE_DECISIONS.labels(state="approved" if approve else "rejected").inc()
        self.store.audit(approver, f"{'approve' if approve else 'reject'} PR #{gate['number']}", state, head=head)
        outcome = Message(f"Change {'approved' if approve else 'rejected'} by <@{approver}>",
                          tone="success" if approve else "error", lines=(f"PR #{gate['number']}, commit `{head[:7]}`",))
        self.notify(gate["number"], f"decision-{head}", outcome)
        self.notifier.replace(gate["request_channel"], gate["request_ts"], outcome)
        return ""

    def sweep(self) -> None:
        """Poll the change system, fail gates whose change request expired undecided, and report
        verdicts whose report GitHub did not take."""
        if self.settings.policy.provider == "webhook":
            self.poll()
        for gate in self.store.query("SELECT * FROM gates WHERE forge = ? AND reported = 0", self.forge.name):
            self._report(gate["number"], gate["head"], gate["state"], gate["description"])
        now = self.clock()
        for gate in self.store.pending_gates():
            if now > gate["expires"]:
                self._expire(gate)

    def _expire(self, gate: Any) -> None:
        description = "change request expired without a decision"
        if self.store.decide_gate(self.forge.name, gate["number"], gate["head"], "failure", description, "expiry"):
            self._report(gate["number"], gate["head"], "failure", description)
            expired = Message(f"Change request for PR #{gate['number']} expired", tone="error",
                              lines=("push a new commit or ask again to request approval anew",))
            if gate["request_channel"] != "webhook":  # a webhook request's ts is its status URL, not a message
                self.notifier.replace(gate["request_channel"], gate["request_ts"], expired)
            self.notify(gate["number"], f"expired-{gate['head']}", expired)

    def catch_up(self) -> None:
        """After a restart: gate the open fluxbot PRs and pending gates again, and report merges or
        closes of threads not yet settled (not every thread ever stored)."""
        try:
            open_numbers = {pr.number for pr in self.forge.open_prs()}
        except ForgeError as error:
            log.warning("catch-up could not list open PRs: %s", error)
            return
        numbers = open_numbers | {g["number"] for g in self.store.pending_gates() if g["forge"] == self.forge.name}
        for number in sorted(numbers):
            self._safely(self.evaluate, number)
        for thread in self.store.open_threads(self.forge.name):
            if thread["number"] not in open_numbers:
                self._safely(self._catch_up_closed, thread["number"])

    def _catch_up_closed(self, number: int) -> None:
        pull = self.forge.facts(number)
        if pull.state == "open":
            self.evaluate(number)
            return
        if pull.state == "merged":
            self.notify(number, "merged", Message(f"PR #{number} merged", tone="success",
                                                  lines=(f"merge commit `{pull.merge_commit[:12]}`",)))
        else:
            self.notify(number, "closed", Message(f"PR #{number} closed without merging"))
        self.store.settle_thread(self.forge.name, number)

    @staticmethod
    def _safely(step: Callable[[int], None], number: int) -> None:
        try:  # one unreadable PR must not stop the others
            step(number)
        except Exception as error:
            log.warning("catch-up of PR #%s failed: %s", number, error)

    # threads ----------------------------------------------------------------------------------

    def notify(self, number: int, key: str, message: Message) -> None:
        """Post into the PR's thread, once per (PR, key) whatever redeliveries or restarts happen."""
        thread = self.store.thread_for(self.forge.name, number)
        if thread is None:
            return
        if self.store.first_delivery("notify", f"{self.forge.name}:{number}:{key}"):
            self.notifier.post(thread["channel"], message, thread["thread_ts"])

    def _ensure_thread(self, pull: PullRequest, productive: tuple[str, ...], requester: str) -> None:
        # A PR opened by hand that touches a productive cluster gets its thread in the change channel.
        if not productive or not self.settings.change_channel:
            return
        if self.store.thread_for(self.forge.name, pull.number) is not None:
            return
        ts = self.notifier.post(self.settings.change_channel, Message(
            f"PR #{pull.number} changes productive {', '.join(productive)}", lines=(pull.title,),
            links=(Link(f"PR #{pull.number}", pull.url),), context=f"opened by {pull.opened_by}"))
        if ts:
            self.store.link_thread(self.forge.name, pull.number, self.settings.change_channel, ts, requester)


@lru_cache(maxsize=1)
def _http() -> requests.Session:
    """A session that retries connection failures and 5xx answers a few times, with backoff."""
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(502, 503, 504), allowed_methods=None)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _logins(stored: str) -> list[str]:
    """The forge logins saved with a gate (a JSON list; older state files saved one login)."""
    try:
        value = json.loads(stored)
    except ValueError:
        return [stored] if stored else []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _people(logins: set[str]) -> str:
    return ", ".join(sorted(logins))


def _who(user: str) -> str:
    return f"<@{user}>" if user[:1] in "UW" and user.isupper() else user
