"""PR impact and gate verdicts, on the in-memory repo."""
from __future__ import annotations

import pytest

from commands.gate import GatePolicy, approval_refusal, open_verdict
from commands.impact import Impact, impact
from commands.repo import RepoSnapshot
from tests.commands.conftest import build_reader


@pytest.mark.parametrize(
    "files, clusters, productive",
    [
        (["clusters/prod/flux.yml"], ("prod",), ("prod",)),
        (["clusters/lab/sync.yaml"], ("lab",), ()),
        (["apps/podinfo/release.yaml"], ("prod",), ("prod",)),  # prod deploys podinfo
        (["apps/other/release.yaml"], (), ()),
        (["infrastructure/nginx/release.yaml"], ("lab",), ()),  # only the branch-tracking cluster
        (["README.md", "CHANGELOG.md"], (), ()),
        (["clusters/new-cluster/infra.yaml"], ("new-cluster",), ()),
    ],
)
def test_impact(repo: RepoSnapshot, files, clusters, productive) -> None:
    result = impact(files, repo)
    assert (result.clusters, result.productive) == (clusters, productive)
    assert result.gated is bool(productive)


def test_productive_on_either_side_gates() -> None:
    base = RepoSnapshot(build_reader())
    head = RepoSnapshot(build_reader(), {"prod": False})  # the PR switches prod's flag off
    assert impact(["clusters/prod/flux.yml"], head).productive == ()
    assert impact(["clusters/prod/flux.yml"], base, head).productive == ("prod",)


def test_verdicts() -> None:
    gated, free = Impact(("prod",), ("prod",)), Impact(("lab",), ())
    assert open_verdict(free, "promotion", GatePolicy()).state == "success"
    assert "no productive cluster" in open_verdict(free, "promotion", GatePolicy()).description
    pending = open_verdict(gated, "promotion", GatePolicy())
    assert (pending.state, pending.needs_request) == ("pending", True)
    assert "awaiting change approval: changes productive prod" == pending.description
    expedited = open_verdict(gated, "rollback", GatePolicy())
    assert (expedited.state, expedited.emergency) == ("success", True)
    assert open_verdict(gated, "rollback", GatePolicy(rollback="require")).state == "pending"
    assert open_verdict(gated, "promotion", GatePolicy(provider="none")).state == "success"


def test_four_eyes() -> None:
    approvers = frozenset({"U_CAB1", "U_ALICE"})
    identities = {"cab1-gh": "U_CAB1", "alice-gh": "U_ALICE"}
    assert "four eyes" in approval_refusal("U_ALICE", approvers, requester="U_ALICE")
    assert "four eyes" in approval_refusal("U_CAB1", approvers, "U_X", frozenset({"cab1-gh"}), identities)
    assert "four eyes" in approval_refusal("U_CAB1", approvers, "U_X", frozenset({"CAB1-GH"}), identities)
    assert "approvers group" in approval_refusal("U_EVE", approvers, requester="U_X")
    assert approval_refusal("U_CAB1", approvers, requester="U_ALICE") == ""
    assert approval_refusal("U_CAB1", approvers, "", frozenset({"alice-gh"}), identities) == ""


def test_four_eyes_never_fails_open_on_an_unmapped_author() -> None:
    """Before: the author's login was compared with chat user IDs, so an unmapped author passed."""
    approvers = frozenset({"U_CAB1", "U_CAB2"})
    identities = {"cab2-gh": "U_CAB2"}
    # cab1 may be the unmapped `someone`: nothing tells them apart
    refusal = approval_refusal("U_CAB1", approvers, "", frozenset({"someone"}), identities)
    assert "cannot tell you apart" in refusal and "identities" in refusal
    # cab2's own login is known and differs from `someone`'s
    assert approval_refusal("U_CAB2", approvers, "", frozenset({"someone"}), identities) == ""
