"""Chat text -> typed commands: prefixes, case, spacing, lists, and names that must be refused."""
from __future__ import annotations

import pytest

from commands import promote, rollback
from commands.model import CommandError, PrAction
from commands.registry import parse


@pytest.mark.parametrize(
    "text",
    [
        "promote v0.4.0 to prod-eu",
        "/flux promote v0.4.0 to prod-eu",
        "flux   PROMOTE   v0.4.0   TO   prod-eu  ",
        "<@U0LAN0Z89> promote v0.4.0 to prod-eu",
        "@fluxbot Promote v0.4.0 To prod-eu",
    ],
)
def test_prefixes_case_and_spacing(text: str) -> None:
    spec, command = parse(text)
    assert spec is promote.SPEC
    assert command == promote.Promote("v0.4.0", ("prod-eu",))


@pytest.mark.parametrize("tail", ["a,b", "a, b", "a ,b", "a b", "a,b,a"])
def test_cluster_lists(tail: str) -> None:
    assert parse(f"promote v1.0.0 to {tail}")[1].clusters == ("a", "b")


def test_rollback_forms() -> None:
    assert parse("rollback prod")[1] == rollback.Rollback("prod")
    assert parse("rollback prod to v0.2.0")[1] == rollback.Rollback("prod", "v0.2.0")
    assert parse("rollback prod to v0.2.0 because nginx crashloop")[1] == rollback.Rollback(
        "prod", "v0.2.0", "nginx crashloop"
    )
    assert parse("rollback prod BECAUSE 5xx after deploy")[1] == rollback.Rollback("prod", "", "5xx after deploy")


def test_pr_actions() -> None:
    assert parse("pr merge 3")[1] == PrAction("merge", 3)
    assert parse("pr close #12")[1] == PrAction("close", 12)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "no command"),
        ("deploy v1 to prod", "not a fluxbot command"),
        ("promot v1.0.0 to prod", "not a fluxbot command"),
        ("promote v1.0.0", "needs a version"),
        ("promote v1.0.0 prod", "needs a version"),
        ("promote v1 v2 to prod", "not one version"),
        ("promote v1.0.0 to ../demo", "not a valid cluster"),
        ("promote v1.0.0 to demo;rm", "not a valid cluster"),
        ("promote v1.0.0 to $(id)", "not a valid cluster"),
        ("promote v1.0.0 to a/b", "not a valid cluster"),
        ("promote ../v1 to demo", "not a valid version"),
        ("rollback", "rollback takes"),
        ("rollback prod to", "rollback takes"),
        ("rollback prod because", "needs a reason"),
        ("pr merge x", "not a PR number"),
        ("pr rebase 1", "pr takes"),
        ("versions now", "no arguments"),
        ("status a b", "at most one"),
        ("diff v1", "two versions"),
    ],
)
def test_bad_input_is_a_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as error:
        parse(text)
    assert fragment in error.value.what
    assert error.value.hint  # always says what would work


def test_unknown_verb_suggests_the_nearest() -> None:
    with pytest.raises(CommandError) as error:
        parse("promot v1.0.0 to prod")
    assert "did you mean `promote`" in error.value.hint
