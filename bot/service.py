"""The application service: one chat request in, the messages to send back out.

Transports (shell, Slack) call `FluxBot.handle`; it reads the repo, asks the pure planner in
`commands/`, and carries the resulting plans out through the workspace and the forge. Every
request ends in a message and an audit record, whatever fails.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from bot.forge.base import Forge, ForgeError
from bot.store import Store
from bot.workspace import Workspace, WorkspaceError
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, CommandError, Link, Message, PrAction, PullRequest
from commands.registry import error_message, parse
from commands.repo import RepoSnapshot

log = logging.getLogger(__name__)


@dataclass
class FluxBot:
    workspace: Workspace
    forge: Forge
    store: Store
    productive_overrides: Mapping[str, bool] = field(default_factory=dict)

    def snapshot(self) -> RepoSnapshot:
        return RepoSnapshot(self.workspace.reader(), self.productive_overrides)

    def handle(self, text: str, user: str) -> list[Message]:
        """Run one chat command for `user`; never raises, always answers."""
        try:
            spec, command = parse(text)
        except CommandError as error:
            self.store.audit(user, text, "refused", reason=error.what)
            return [error_message(error)]
        try:
            messages = self._run(spec, command, user)
        except CommandError as error:
            self.store.audit(user, text, "refused" if error.tone == "error" else "ok", reason=error.what)
            return [error_message(error)]
        except (WorkspaceError, ForgeError) as error:
            self.store.audit(user, text, "failed", reason=str(error))
            return [Message(str(error), lines=("nothing was changed; try again, or check the repository",), tone="error")]
        except Exception:
            incident = uuid.uuid4().hex[:8]
            log.exception("command failed", extra={"incident": incident, "user": user, "command": text})
            self.store.audit(user, text, "error", incident=incident)
            return [Message(f"fluxbot hit an internal error (incident {incident})",
                            lines=("nothing was changed; the incident id is in fluxbot's log",), tone="error")]
        self.store.audit(user, text, "ok", replies=[m.title for m in messages])
        return messages

    def _run(self, spec: CommandSpec, command: Any, user: str) -> list[Message]:
        ctx = Context(self.snapshot(), user, tuple(self.forge.open_prs()))
        outcome = spec.run(command, ctx)
        if isinstance(outcome, Message):
            return [outcome]
        if isinstance(outcome, PrAction):
            return [self._act_on_pr(outcome, user)]
        return [self.open_change(plan, user) for plan in outcome]

    def open_change(self, plan: ChangePlan, user: str) -> Message:
        """Push the plan's branch and open its PR; a branch whose PR failed is deleted again."""
        existing = self.forge.find_open(plan.branch)
        if existing is not None:
            return _pr_message(existing, plan, "This change is already open")
        head = self.workspace.push_change(plan)
        try:
            pr = self.forge.create(plan, head, user)
        except BaseException:
            self.workspace.delete_branch(plan.branch)
            raise
        return _pr_message(pr, plan, "Opened")

    def _act_on_pr(self, action: PrAction, user: str) -> Message:
        if action.action == "merge":
            pr = self.forge.merge(action.number, user)
            return Message(f"Merged PR #{pr.number}: {pr.title}", links=(Link(f"PR #{pr.number}", pr.url),), tone="success")
        pr = self.forge.close(action.number, user)
        return Message(f"Closed PR #{pr.number}: {pr.title}", lines=(f"branch {pr.branch} deleted",))


def _pr_message(pr: PullRequest, plan: ChangePlan, verb: str) -> Message:
    return Message(
        f"{verb}: PR #{pr.number} {pr.title}",
        fields=(
            ("Cluster", plan.cluster),
            ("Change", f"{plan.from_version} -> {plan.to_version}"),
            ("Productive", "yes: the change gate applies" if plan.productive else "no"),
            ("Branch", plan.branch),
        ),
        links=(Link(f"PR #{pr.number}", pr.url),),
        context=f"requested by {pr.author}",
        tone="success",
    )
