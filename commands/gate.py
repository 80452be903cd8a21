"""The change gate's decisions: what a PR's commit status should say, and who may approve.

Pure: the adapter in `bot/gate.py` stores gates, sets commit statuses and posts to Slack.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from commands.impact import Impact

CONTEXT = "fluxbot/change-gate"
State = Literal["success", "pending", "failure"]


@dataclass(frozen=True)
class GatePolicy:
    provider: Literal["slack", "webhook", "none"] = "slack"
    rollback: Literal["expedite", "require"] = "expedite"
    expire_seconds: float = 24 * 3600


@dataclass(frozen=True)
class Verdict:
    state: State
    description: str  # the commit status description (GitHub keeps 140 characters)
    needs_request: bool = False  # ask the change provider for a decision
    emergency: bool = False  # an expedited rollback: passed at once, recorded and announced


def open_verdict(impact: Impact, kind: str, policy: GatePolicy) -> Verdict:
    """The gate for a PR's new head commit."""
    if not impact.gated:
        return Verdict("success", f"no change approval needed: {impact.describe()}"[:140])
    if policy.provider == "none":
        return Verdict("success", f"not gated (provider none): {impact.describe()}"[:140])
    if kind == "rollback" and policy.rollback == "expedite":
        return Verdict("success", f"emergency rollback, expedited: {impact.describe()}"[:140], emergency=True)
    return Verdict("pending", f"awaiting change approval: {impact.describe()}"[:140], needs_request=True)


def approval_refusal(approver: str, approvers: frozenset[str], requester: str, author: str) -> str:
    """Why `approver` may not approve (four eyes, approver group), or '' when they may."""
    if approver in (requester, author):
        return "four eyes: the requester and the PR author cannot approve their own change"
    if approver not in approvers:
        return "only members of the approvers group can decide change requests"
    return ""
