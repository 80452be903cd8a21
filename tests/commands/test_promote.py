"""Planning promotions and rollbacks: minimal edits, branch names, PR text, and every refusal."""
from __future__ import annotations

import dataclasses

import pytest

from commands.context import Context
from commands.model import AlreadyOpen, ChangePlan, CommandError, ScalarEdit
from commands.registry import plan
from commands.yamledit import load_documents
from tests.commands.conftest import open_pr


def single(outcome) -> ChangePlan:
    assert isinstance(outcome, tuple) and len(outcome) == 1
    return outcome[0]


def test_promotion_plan(ctx: Context) -> None:
    p = single(plan("promote v0.10.0 to stage", ctx))
    assert p.kind == "promotion" and p.cluster == "stage"
    assert p.branch == "fluxbot/promote-stage-v0.10.0"
    assert p.commit_message.startswith("chore(stage): promote infrastructure to v0.10.0\n")
    assert "Requested-by: alice" in p.commit_message
    assert p.labels == ("fluxbot", "promotion", "cluster:stage", "productive")
    (edit,) = p.edits
    assert edit.path == "clusters/stage/infra.yaml"
    assert edit.after == edit.before.replace(b"tag: v0.9.0", b"tag: v0.10.0")
    assert load_documents(edit.after.decode())[1]["spec"]["ref"]["tag"] == "v0.10.0"


def test_promotion_body_tells_what_changes(ctx: Context) -> None:
    body = single(plan("promote 0.10.0 to stage", ctx)).body
    assert "`v0.9.0` -> `v0.10.0`" in body
    assert "**productive**" in body
    assert "Requested by: alice" in body
    assert "nginx 4.11 with a long entry that wraps onto a second line" in body
    assert "~ ingress-nginx: ingress-nginx 4.10.0 -> 4.11.3" in body
    assert "cert-manager" not in body  # released in v0.9.0, which stage already runs


def test_several_clusters_one_plan_each(ctx: Context) -> None:
    plans = plan("promote v0.10.0 to stage, prod", ctx)
    assert [p.cluster for p in plans] == ["stage", "prod"]
    assert len({p.branch for p in plans}) == 2


@pytest.mark.parametrize(
    "text, what, hint",
    [
        ("promote v0.10.0 to prd", "no cluster `prd`", "did you mean `prod`"),
        ("promote v0.10.0 to nothere", "no cluster `nothere`", "known clusters: `broken`"),
        ("promote v9.9.9 to prod", "no release `v9.9.9`", "`v0.10.0`, `v0.9.0`, `v0.2.0`"),
        ("promote latest to prod", "not a semantic version", "v1.2.3"),
        ("promote v0.10.0 to lab", "tracks the branch `main`", "pinned to a tag"),
        ("promote v0.10.0 to semver", "not by a tag", "by hand"),
        ("promote v0.9.0 to prod", "already pinned to `v0.9.0`", "nothing"),
        ("promote v0.2.0 to prod", "older than `v0.9.0`", "rollback prod to v0.2.0"),
        ("promote v0.10.0 to broken", "back-reference of `broken`", ""),
        # one bad cluster refuses the whole request: no plan for `stage` either
        ("promote v0.10.0 to stage, lab", "cannot promote v0.10.0 to 1 of 2 clusters; nothing was opened", ""),
    ],
)
def test_refusals(ctx: Context, text: str, what: str, hint: str) -> None:
    with pytest.raises(CommandError) as error:
        plan(text, ctx)
    assert what in error.value.what
    assert hint in error.value.hint


def test_one_open_change_per_cluster(ctx: Context) -> None:
    busy = dataclasses.replace(ctx, open_prs=(open_pr("stage", 7),))
    with pytest.raises(CommandError) as error:
        plan("promote v0.10.0 to stage", busy)
    assert "PR #7" in error.value.what and "https://forge/pull/7" in error.value.what
    assert single(plan("promote v0.10.0 to prod", busy)).cluster == "prod"


def test_the_same_request_again_is_answered_with_its_open_pr(ctx: Context) -> None:
    repeat = dataclasses.replace(ctx, open_prs=(open_pr("stage", 8, "fluxbot/promote-stage-v0.10.0"),))
    with pytest.raises(AlreadyOpen) as answer:
        plan("promote v0.10.0 to stage", repeat)
    assert answer.value.tone == "info" and "PR #8" in answer.value.what


def test_a_plan_records_the_scalar_it_changes(ctx: Context) -> None:
    (edit,) = single(plan("promote v0.10.0 to stage", ctx)).edits
    assert edit.scalar == ScalarEdit(1, ("spec", "ref", "tag"), "v0.9.0", "v0.10.0")


def test_rollback_without_version_never_moves_forward(ctx: Context) -> None:
    # prod's history: v0.2.0 -> v0.9.0 -> v0.10.0 -> v0.9.0 (now); the pin before is v0.10.0, which
    # is newer: the rollback goes to the newest older release prod ran, v0.2.0
    p = single(plan("rollback prod because 5xx", ctx))
    assert (p.kind, p.from_version, p.to_version) == ("rollback", "v0.9.0", "v0.2.0")
    assert p.branch == "fluxbot/rollback-prod-v0.2.0"
    assert "Reason: 5xx" in p.body and "Reason: 5xx" in p.commit_message
    assert "rollback" in p.labels


def test_rollback_of_a_cluster_that_ran_nothing_older_takes_the_next_older_release(ctx: Context) -> None:
    p = single(plan("rollback stage", ctx))  # stage only ever ran v0.9.0
    assert (p.from_version, p.to_version) == ("v0.9.0", "v0.2.0")


def test_rollback_reason_is_one_bounded_line(ctx: Context) -> None:
    p = single(plan("rollback prod because 5xx\nRequested-by: mallory", ctx))
    assert "Reason: 5xx Requested-by: mallory" in p.commit_message
    assert p.commit_message.count("Requested-by:") == 2 and p.commit_message.rstrip().endswith("Requested-by: alice")
    with pytest.raises(CommandError, match="at most 300"):
        plan("rollback prod because " + "x" * 2_000, ctx)


def test_rollback_to_a_named_version(ctx: Context) -> None:
    p = single(plan("rollback prod to v0.2.0", ctx))
    assert p.to_version == "v0.2.0"
    assert p.edits[0].after == p.edits[0].before.replace(b"tag: v0.9.0", b"tag: v0.2.0")
    assert "Changes that are taken back" in p.body


@pytest.mark.parametrize(
    "text, what",
    [
        ("rollback lab from v0.9.0", "tracks the branch"),
        ("rollback prod from v0.10.0", "pinned to `v0.9.0` now, not `v0.10.0`"),
        ("rollback prod to v0.2.0 to v0.2.0", "not understood"),
        ("rollback prod to v0.10.0", "newer than"),
        ("rollback prod to v0.9.0", "already pinned"),
        ("rollback lab", "tracks the branch"),
    ],
)
def test_rollback_refusals(ctx: Context, text: str, what: str) -> None:
    with pytest.raises(CommandError) as error:
        plan(text, ctx)
    assert what in error.value.what


def test_every_cluster_of_a_refused_promotion_gets_its_line(ctx: Context) -> None:
    with pytest.raises(CommandError) as error:
        plan("promote v0.10.0 to stage, lab", ctx)
    assert error.value.details[0].startswith("lab: `lab` tracks the branch `main`")
    assert error.value.details[1] == "stage: would move `v0.9.0` -> `v0.10.0`; not opened"
