"""The change gate and PR notifications: GitHub events in, commit statuses and thread messages out.

Decisions come from `commands.impact` and `commands.gate`; this module stores gates (so a restart
loses nothing), sets the `fluxbot/change-gate` status, asks approvers in the change channel and
posts every event about a PR into the thread of the request that opened it, once.

Who calls it: `bot.webhooks` (GitHub events), `bot.slack` (Approve / Reject clicks), and the
server at start (`catch_up`) and periodically (`sweep`).
"""
from __future__ import annotations

import logging
import os
import time
from functools import lru_cache
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bot.config import GateSettings
from bot.metrics import GATE_DECISIONS
from bot.service import FluxBot
from bot.store import Store
from commands.gate import CONTEXT, approval_refusal, open_verdict
from commands.impact import impact
from commands.model import Link, Message, PullRequest

log = logging.getLogger(__name__)

_FAILED_CHECKS = {"failure", "timed_out", "cancelled", "action_required"}


class Notifier(Protocol):
    """What the gate needs from chat (Slack implements it)."""

    def post(self, channel: str, message: Message, thread_ts: str | None = None, *,
             actions: list[dict[str, Any]] | None = None) -> str | None: ...

    def replace(self, channel: str, ts: str | None, message: Message) -> None: ...

    def members(self, group: str) -> frozenset[str]: ...


@dataclass
class ChangeGate:
    bot: FluxBot
    store: Store
    notifier: Notifier
    settings: GateSettings
    clock: Callable[[], float] = time.time

    @property
    def forge(self) -> Any:
        return self.bot.forge

    # GitHub events ----------------------------------------------------------------------------

    def on_event(self, event: str, payload: dict[str, Any]) -> None:
        """Dispatch one webhook event (already verified and deduplicated)."""
        handler = {
            "pull_request": self._on_pull_request,
            "pull_request_review": self._on_review,
            "check_run": self._on_check_run,
            "status": self._on_status,
        }.get(event)
        if handler is not None:
            handler(payload)

    def _on_pull_request(self, payload: dict[str, Any]) -> None:
        action, number = payload.get("action"), int(payload["pull_request"]["number"])
        if action in ("opened", "reopened", "synchronize", "ready_for_review"):
            self.evaluate(number, reason="new commits pushed" if action == "synchronize" else "")
        elif action == "closed":
            pull = payload["pull_request"]
            if pull.get("merged"):
                self.notify(number, "merged", Message(f"PR #{number} merged", tone="success",
                                                      lines=(f"merge commit `{(pull.get('merge_commit_sha') or '')[:12]}`",)))
                merged_pr = self.forge.get(number)
                self.bot.merged(merged_pr)
                tag = self.bot.tag_release(merged_pr)
                if tag:
                    self.notify(number, f"tag-{tag}", Message(f"Tagged the merge commit as {tag}", tone="success"))
            else:
                self.notify(number, "closed", Message(f"PR #{number} closed without merging"))

    def _on_review(self, payload: dict[str, Any]) -> None:
        review, number = payload["review"], int(payload["pull_request"]["number"])
        state, who = str(review.get("state", "")).lower(), review["user"]["login"]
        if state == "approved":
            self.notify(number, f"review-{review['id']}", Message(f"Review: approved by {who}", tone="success"))
        elif state == "changes_requested":
            self.notify(number, f"review-{review['id']}", Message(f"Review: changes requested by {who}", tone="warning"))

    def _on_check_run(self, payload: dict[str, Any]) -> None:
        run = payload["check_run"]
        if run.get("status") != "completed" or run.get("conclusion") not in _FAILED_CHECKS:
            return
        for pull in run.get("pull_requests") or []:
            self.notify(int(pull["number"]), f"check-{run['id']}",
                        Message(f"Check `{run['name']}` {run['conclusion']}", tone="error",
                                links=(Link("details", run.get("html_url") or ""),) if run.get("html_url") else ()))

    def _on_status(self, payload: dict[str, Any]) -> None:
        if payload.get("context") == CONTEXT or payload.get("state") not in ("failure", "error"):
            return
        for row in self.store.query("SELECT number FROM gates WHERE forge = ? AND head = ?", self.forge.name, payload["sha"]):
            self.notify(row["number"], f"status-{payload['id']}",
                        Message(f"Status `{payload['context']}` {payload['state']}", tone="error",
                                lines=(payload.get("description") or "",)))

    # the gate ---------------------------------------------------------------------------------

    def evaluate(self, number: int, reason: str = "") -> None:
        """(Re)gate a PR's current head commit: impact, status, and a change request if needed."""
        pull = self.forge.get(number)
        if pull.state != "open":
            return
        previous = self.store.gate(self.forge.name, number)
        if previous is not None and previous["head"] == pull.head:
            return  # this commit is gated already (a redelivery or a catch-up)
        files = self.forge.changed_files(number)
        result = impact(files, self.bot.snapshot())
        verdict = open_verdict(result, pull.kind, self.settings.policy)
        requester = self._requester(pull)
        author = self.settings.identities.get(pull.opened_by, pull.opened_by)
        now = self.clock()
        self.store.save_gate(self.forge.name, number, pull.head, verdict.state, verdict.description,
                             list(result.clusters), pull.kind, requester, author, now,
                             now + self.settings.policy.expire_seconds)
        self.forge.set_status(pull.head, verdict.state, verdict.description, CONTEXT)
        GATE_DECISIONS.labels(state="emergency" if verdict.emergency else verdict.state).inc()
        self.store.audit("fluxbot", f"gate PR #{number}", verdict.state, head=pull.head,
                         clusters=result.clusters, emergency=verdict.emergency)
        self._ensure_thread(pull, result.productive)
        if reason and previous is not None:
            self.notify(number, f"sync-{pull.head}", Message(
                f"New commits on PR #{number} (`{pull.head[:7]}`)",
                lines=("change approval reset: an approval is for the exact commit approved",) if verdict.needs_request else ()))
        if verdict.needs_request:
            self._request_approval(pull, result.productive, requester)
        else:
            self.notify(number, f"gate-{pull.head}", Message(f"Change gate: {verdict.description}",
                                                             tone="success" if verdict.state == "success" else "info"))
        if verdict.emergency and self.settings.change_channel:
            self.notifier.post(self.settings.change_channel, Message(
                f"Emergency change: {pull.title}", tone="warning", links=(Link(f"PR #{number}", pull.url),),
                lines=(f"expedited rollback of {', '.join(result.productive)}, requested by {_who(requester)}",
                       "recorded as an emergency change; no approval was waited for")))

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
        ts = self.notifier.post(channel, message, actions=[
            {"type": "button", "action_id": "fluxbot_gate_approve", "value": value, "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "fluxbot_gate_reject", "value": value, "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}},
        ])
        if ts:
            self.store.gate_request_posted(self.forge.name, pull.number, pull.head, channel, ts)
        self.notify(pull.number, f"gate-{pull.head}", Message(
            f"Change gate: pending, awaiting approval in <#{channel}>", tone="info",
            lines=(f"for commit `{pull.head[:7]}`; changes productive {', '.join(productive)}",)))

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
                self.forge.set_status(gate["head"], verdict, description, CONTEXT)
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
                                   gate["requester"], gate["author"])
        if refusal:
            return f"You cannot decide this change request: {refusal}."
        state = "success" if approve else "failure"
        description = f"change {'approved' if approve else 'rejected'} by {approver}"
        if not self.store.decide_gate(self.forge.name, gate["number"], head, state, description, approver):
            return "This change request was already decided."
        self.forge.set_status(head, state, description, CONTEXT)
        GATE_DECISIONS.labels(state="approved" if approve else "rejected").inc()
        self.store.audit(approver, f"{'approve' if approve else 'reject'} PR #{gate['number']}", state, head=head)
        outcome = Message(f"Change {'approved' if approve else 'rejected'} by <@{approver}>",
                          tone="success" if approve else "error", lines=(f"PR #{gate['number']}, commit `{head[:7]}`",))
        self.notify(gate["number"], f"decision-{head}", outcome)
        self.notifier.replace(gate["request_channel"], gate["request_ts"], outcome)
        return ""

    def sweep(self) -> None:
        """Poll the change system, then fail gates whose change request expired undecided."""
        if self.settings.policy.provider == "webhook":
            self.poll()
        now = self.clock()
        for gate in self.store.pending_gates():
            if now > gate["expires"]:
                self._expire(gate)

    def _expire(self, gate: Any) -> None:
        description = "change request expired without a decision"
        if self.store.decide_gate(self.forge.name, gate["number"], gate["head"], "failure", description, "expiry"):
            self.forge.set_status(gate["head"], "failure", description, CONTEXT)
            expired = Message(f"Change request for PR #{gate['number']} expired", tone="error",
                              lines=("push a new commit or ask again to request approval anew",))
            self.notifier.replace(gate["request_channel"], gate["request_ts"], expired)
            self.notify(gate["number"], f"expired-{gate['head']}", expired)

    def catch_up(self) -> None:
        """After a restart: gate new commits and report merges or closes missed while down."""
        for thread in self.store.open_threads(self.forge.name):
            try:
                pull = self.forge.get(thread["number"])
            except Exception as error:  # one unreadable PR must not stop the others
                log.warning("catch-up of PR #%s failed: %s", thread["number"], error)
                continue
            if pull.state == "open":
                self.evaluate(pull.number)
            elif pull.state == "merged":
                self.notify(pull.number, "merged", Message(f"PR #{pull.number} merged", tone="success",
                                                           lines=(f"merge commit `{pull.merge_commit[:12]}`",)))
            else:
                self.notify(pull.number, "closed", Message(f"PR #{pull.number} closed without merging"))

    # threads ----------------------------------------------------------------------------------

    def notify(self, number: int, key: str, message: Message) -> None:
        """Post into the PR's thread, once per (PR, key) whatever redeliveries or restarts happen."""
        thread = self.store.thread_for(self.forge.name, number)
        if thread is None:
            return
        if self.store.first_delivery("notify", f"{self.forge.name}:{number}:{key}"):
            self.notifier.post(thread["channel"], message, thread["thread_ts"])

    def _ensure_thread(self, pull: PullRequest, productive: tuple[str, ...]) -> None:
        # A PR opened by hand that touches a productive cluster gets its thread in the change channel.
        if not productive or not self.settings.change_channel:
            return
        if self.store.thread_for(self.forge.name, pull.number) is not None:
            return
        ts = self.notifier.post(self.settings.change_channel, Message(
            f"PR #{pull.number} changes productive {', '.join(productive)}", lines=(pull.title,),
            links=(Link(f"PR #{pull.number}", pull.url),), context=f"opened by {pull.opened_by}"))
        if ts:
            self.store.link_thread(self.forge.name, pull.number, self.settings.change_channel, ts, self._requester(pull))

    def _requester(self, pull: PullRequest) -> str:
        thread = self.store.thread_for(self.forge.name, pull.number)
        if thread is not None:
            return thread["requester"]
        return self.settings.identities.get(pull.opened_by, pull.opened_by)


@lru_cache(maxsize=1)
def _http() -> requests.Session:
    """A session that retries connection failures and 5xx answers a few times, with backoff."""
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(502, 503, 504), allowed_methods=None)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _who(user: str) -> str:
    return f"<@{user}>" if user[:1] in "UW" and user.isupper() else user
