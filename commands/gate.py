"""The change gate's decisions: what a PR's commit status should say, and who may approve.

Pure: the adapter in `bot/gate.py` stores gates, sets commit statuses and posts to Slack.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

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


def approval_refusal(approver: str, approvers: frozenset[str], requester: str, logins: frozenset[str] = frozenset(),
                     identities: Mapping[str, str] | None = None) -> str:
    """Why `approver` (a chat user) may not approve, or '' when they may.

    Four eyes compares identities of one kind: `requester` is a chat user; `logins` are the forge
    accounts that opened or pushed to the PR, mapped to chat users through `identities`
    (forge login -> chat user). A login nobody mapped cannot be told apart from the approver
    unless the approver has a forge login of their own that differs: it never fails open.
    """
    identities = identities or {}
    if approver == requester:
        return "four eyes: the requester cannot approve their own change"
    mine = {login.lower() for login, user in identities.items() if user == approver}
    for login in sorted(logins):
        if identities.get(login) == approver or login.lower() in mine:
            return f"four eyes: you opened or pushed to this PR (as {login}) and cannot approve it"
    unmapped = sorted(login for login in logins if login not in identities)
    if unmapped and not mine:
        return (f"four eyes: {', '.join(unmapped)} opened or pushed to this PR and has no chat identity, and your"
                " chat user has no forge login in `identities`, so fluxbot cannot tell you apart; map both in"
                " fluxbot.yaml `identities`")
    if approver not in approvers:
        return "only members of the approvers group can decide change requests"
    return ""
