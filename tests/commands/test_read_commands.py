"""status, versions, diff, prs and help: what they show, computed from the repo snapshot."""
from __future__ import annotations

import dataclasses

import pytest

from commands.context import Context
from commands.model import CommandError, Message
from commands.registry import COMMANDS, plan
from tests.commands.conftest import open_pr


def test_status_table_of_all_clusters(ctx: Context) -> None:
    busy = dataclasses.replace(ctx, open_prs=(open_pr("prod", 3),))
    message = plan("status", busy)
    assert isinstance(message, Message)
    rows = {row[0]: row for row in message.table[1:]}
    assert rows["prod"] == ("prod", "v0.9.0", "yes", "1", "#3", "")
    assert rows["lab"] == ("lab", "branch main", "no", "-", "", "")
    assert rows["broken"][1] == "?"
    assert "latest release v0.10.0" in message.title


def test_status_of_one_cluster(ctx: Context) -> None:
    fields = dict(plan("status prod", ctx).fields)
    assert fields["Pin"] == "v0.9.0"
    assert fields["Productive"] == "yes"
    assert fields["Behind"] == "1"
    assert fields["Apps"] == "podinfo (values), redis"
    assert fields["Open change"] == "none"


def test_versions_newest_first_with_headline_and_clusters(ctx: Context) -> None:
    message = plan("versions", ctx)
    assert [row[0] for row in message.table[1:]] == ["v0.10.0", "v0.9.0", "v0.2.0"]
    by_tag = {row[0]: row for row in message.table[1:]}
    assert by_tag["v0.9.0"][2] == "cert-manager"
    assert by_tag["v0.9.0"][3] == "prod, stage"
    assert by_tag["v0.10.0"][1] == "2026-05-01"
    assert "1 changelog entry" in message.lines[0]


def test_diff_between_versions(ctx: Context) -> None:
    lines = plan("diff v0.2.0 v0.10.0", ctx).lines
    assert "• v0.9.0 · Added: external-secrets" in lines
    assert "• + cert-manager (cert-manager 1.14.0)" in lines
    assert "• ~ ingress-nginx: ingress-nginx 4.10.0 -> 4.11.3" in lines
    assert "• infrastructure/cert-manager/release.yaml" in lines
    assert not any("v0.2.0 ·" in l for l in lines)  # the starting version's own entries are not "between"


def test_diff_refuses_unknown_versions(ctx: Context) -> None:
    with pytest.raises(CommandError, match="no release"):
        plan("diff v0.2.0 v3.0.0", ctx)


def test_prs_lists_open_changes(ctx: Context) -> None:
    assert plan("prs", ctx).title == "No open fluxbot changes"
    message = plan("prs", dataclasses.replace(ctx, open_prs=(open_pr("prod", 3), open_pr("stage", 4))))
    assert [row[0] for row in message.table[1:]] == ["3", "4"]


def test_pr_action_needs_an_open_pr(ctx: Context) -> None:
    with pytest.raises(CommandError, match="no open fluxbot PR #5"):
        plan("pr merge 5", ctx)


def test_help_is_generated_from_the_registry(ctx: Context) -> None:
    listing = plan("help", ctx)
    assert [row[0] for row in listing.table[1:]] == [f"`{s.usage}`" for s in COMMANDS.values()]
    detail = plan("help rollback", ctx)
    assert detail.title == f"`{COMMANDS['rollback'].usage}`"
    assert "needs permission: `rollback`" in detail.lines
    with pytest.raises(CommandError, match="no command `nope`"):
        plan("help nope", ctx)


def test_every_command_documents_itself() -> None:
    for verb, spec in COMMANDS.items():
        assert spec.verb == verb
        assert spec.summary.endswith(".") and spec.examples
        assert spec.usage.split()[0] == verb
