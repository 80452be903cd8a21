"""The check of every GitHub PR that touches the fleet, as one comment kept up to date and a
`fluxbot/checks` commit status that branch protection can require (#18).

On `pull_request` `opened`, `synchronize` and `reopened`
(https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request) the check is
submitted to a `CheckRunner`, off the webhook thread; a newer push supersedes the older run.
The comment is found again by its marker and edited in place
(https://docs.github.com/en/rest/issues/comments#update-an-issue-comment), so a PR has one.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Callable

from bot.checkrunner import CheckRunner, RunToken
from bot.fleetcheck import _fetch, check_change
from bot.git.workspace import Workspace
from commands.model import Link, Message
from commands.planreport import MARKER, CheckResult, to_markdown

log = logging.getLogger(__name__)

STATUS_CONTEXT = "fluxbot/checks"
CHECKED_ACTIONS = ("opened", "synchronize", "reopened")
_DESCRIPTION_LIMIT = 140  # a commit status description is cut by GitHub beyond this


class PrChecks:
    """Checks PRs on webhook events and publishes the result on the PR."""

    def __init__(self, workspace: Workspace, forge: Any, runner: CheckRunner | None = None,
                 notify: Callable[[int, str, Message], None] | None = None) -> None:
        self.workspace = workspace
        self.forge = forge  # GitHubForge: its PyGithub `repo`, and `set_status`
        self.runner = runner or CheckRunner()
        self.notify = notify  # the PR's Slack thread, if it has one (ChangeGate.notify: once per key)

    def on_event(self, event: str, payload: dict[str, Any]) -> Future[None] | None:
        if event != "pull_request" or payload.get("action") not in CHECKED_ACTIONS:
            return None
        pull = payload["pull_request"]
        number, head, base = int(pull["number"]), str(pull["head"]["sha"]), str(pull["base"]["sha"])
        return self.runner.submit(f"pr-{number}", head, lambda token: self.check(token, number, base, head))

    def check(self, token: RunToken, number: int, base_tip: str, head: str) -> None:
        """Render and diff PR `number` at `head` against where it branched from `base_tip`, then publish."""
        self.forge.set_status(head, "pending", "rendering the affected clusters", STATUS_CONTEXT)
        try:
            # Fetches outside the mirror lock (#20): chat requests read on meanwhile.
            self.workspace.refresh()
            for commit in (base_tip, head):
                _fetch(self.workspace, commit)
            with self.workspace.locked():
                base = self.workspace.repo.git.merge_base(base_tip, head)
            result = check_change(self.workspace, base, head, f"base {base[:12]}", f"head {head[:12]}",
                                  checkpoint=token.check)
        except Exception as error:
            if token.cancelled:
                raise
            log.exception("checking PR #%s at %s failed", number, head[:12])
            self.forge.set_status(head, "error", f"fluxbot could not check this commit: {type(error).__name__}"[
                :_DESCRIPTION_LIMIT], STATUS_CONTEXT)
            return
        token.check()  # a newer push while rendering: its run publishes, this one does not
        self.publish(number, head, result)

    def publish(self, number: int, head: str, result: CheckResult) -> None:
        state = "failure" if result.failed else "success"
        if result.clusters or result.failed:
            upsert_comment(self.forge.repo, number, to_markdown(result))
        self.forge.set_status(head, state, result.headline()[:_DESCRIPTION_LIMIT], STATUS_CONTEXT)
        if self.notify is not None and result.clusters:
            url = f"{self.forge.repo.html_url}/pull/{number}"
            self.notify(number, f"check-{head}", summary_message(result, f"PR #{number} at {head[:12]}", url))


def summary_message(result: CheckResult, title: str, url: str) -> Message:
    """The check for a Slack thread: one line per cluster and the link to the diff on the PR."""
    lines = tuple(f"{c.cluster}: {c.summary()}" + (f" — {c.error}" if c.error else "") for c in result.clusters)
    return Message(f"{title}: {result.headline()}", lines=lines, tone="error" if result.failed else "success",
                   links=(Link("Rendered diff on the PR", url),))


def upsert_comment(repo: Any, number: int, body: str) -> None:
    """Edit fluxbot's check comment on PR `number` (found by its marker), or create it."""
    pull = repo.get_pull(number)
    mine = next((c for c in pull.get_issue_comments() if (c.body or "").startswith(MARKER)), None)
    if mine is not None:
        mine.edit(body)
    else:
        pull.create_issue_comment(body)


def fan_out(*handlers: Callable[[str, dict[str, Any]], object]) -> Callable[[str, dict[str, Any]], None]:
    """One webhook handler that hands each event to every handler; one failing stops no other, and
    the event counts as failed when any did."""

    def handle(event: str, payload: dict[str, Any]) -> None:
        failed: Exception | None = None
        for handler in handlers:
            try:
                handler(event, payload)
            except Exception as error:
                log.exception("handling the github %s event in %s failed", event, getattr(handler, "__qualname__", handler))
                failed = failed or error
        if failed is not None:
            raise failed  # the delivery is then not recorded as handled: GitHub's Redeliver runs it again (#14)

    return handle
