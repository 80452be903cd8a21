"""How the change gate's verdict reaches GitHub: a check run when fluxbot is a GitHub App, else a
commit status.

Why both: anyone with push access can post a commit status in any context, so with a token a
`fluxbot/change-gate: success` can be forged (the gate detects and reverts that, see
`ChangeGate._on_status`). A check run can only be written by the App that owns it, and branch
protection or a ruleset can require the check from exactly that App.
https://docs.github.com/en/rest/checks/runs#create-a-check-run
https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/managing-protected-branches/about-protected-branches#require-status-checks-before-merging
"""
from __future__ import annotations

from typing import Any

from bot.github.vocabulary import GATE_CONTEXT


def report(forge: Any, sha: str, state: str, description: str) -> None:
    """Put the gate's `state` (success | pending | failure) on commit `sha`."""
    if getattr(forge, "is_app", False):
        forge.set_check(sha, state, description, GATE_CONTEXT)
    else:
        forge.set_status(sha, state, description, GATE_CONTEXT)
