"""The permission matrix: deny by default, globs, groups, channels, and refusals that name who may."""
from __future__ import annotations

import pytest

from commands.permissions import Policy, Rule, decide

POLICY = Policy(
    rules=(
        Rule(actions=("promote", "rollback"), clusters=("prod-*",), users=("U_LEAD",), groups=("S_SRE",)),
        Rule(actions=("*",), clusters=("demo", "test"), users=("U_DEV",)),
        Rule(actions=("rollback",), clusters=("*",), groups=("S_ONCALL",), channels=("C_INCIDENT",)),
    ),
    read_channels=("C_OPS", "C_INCIDENT"),
)
NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    "action, clusters, user, groups, channel, allowed",
    [
        ("promote", ("prod-eu",), "U_LEAD", NONE, "C_OPS", True),
        ("promote", ("prod-eu",), "U_X", frozenset({"S_SRE"}), "C_OPS", True),
        ("promote", ("prod-eu",), "U_DEV", NONE, "C_OPS", False),
        ("promote", ("demo",), "U_DEV", NONE, "C_OPS", True),
        ("promote", ("demo", "prod-eu"), "U_DEV", NONE, "C_OPS", False),  # every cluster must be allowed
        ("release", (), "U_LEAD", NONE, "C_OPS", False),
        ("rollback", ("prod-us",), "U_Y", frozenset({"S_ONCALL"}), "C_INCIDENT", True),
        ("rollback", ("prod-us",), "U_Y", frozenset({"S_ONCALL"}), "C_OPS", False),
        (None, (), "U_ANYONE", NONE, "C_OPS", True),
        (None, (), "U_ANYONE", NONE, "C_RANDOM", False),
    ],
)
def test_matrix(action, clusters, user, groups, channel, allowed) -> None:
    assert decide(POLICY, action, clusters, user, groups, channel).allowed is allowed


def test_a_refusal_names_who_may() -> None:
    decision = decide(POLICY, "promote", ("prod-eu",), "U_DEV", NONE, "C_OPS")
    assert decision.reason == "only <!subteam^S_SRE>, <@U_LEAD> may `promote` on `prod-eu`"
    channel = decide(POLICY, "rollback", ("staging",), "U_Y", frozenset({"S_ONCALL"}), "C_OPS")
    assert channel.reason == "only <!subteam^S_ONCALL> may `rollback` on `staging` (from <#C_INCIDENT>)"


def test_deny_by_default_and_reads_follow_channels() -> None:
    empty = Policy()
    assert not decide(empty, "promote", ("demo",), "U1", NONE, "C1").allowed
    assert "nobody may `promote` on `demo` yet" in decide(empty, "promote", ("demo",), "U1", NONE, "C1").reason
    assert decide(empty, None, (), "U1", NONE, "C1").allowed  # reads open everywhere by default
    assert "<#C_OPS>, <#C_INCIDENT>" in decide(POLICY, None, (), "U1", NONE, "C9").reason


def test_the_trusted_shell_may_do_anything() -> None:
    assert decide(Policy(trusted=True), "promote", ("prod-eu",), "me", NONE, "").allowed
