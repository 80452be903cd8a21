"""The pure core of `fluxbot check` (#18): affected clusters, object diffs, the report."""
from __future__ import annotations

import json

from commands.affected import FileChange, affected_clusters, touches_fleet
from commands.objectdiff import REDACTED, REDACTED_CHANGED, AppliedObject, diff_objects
from commands.planreport import COMMENT_LIMIT, MARKER, CheckResult, ClusterCheck, to_json, to_markdown
from commands.repo import RepoSnapshot
from tests.commands.conftest import build_reader, cluster_file
from tests.commands.memory import MemoryReader


def _snapshot(tree: dict[str, str]) -> RepoSnapshot:
    return RepoSnapshot(MemoryReader([tree]))


def _names(found) -> dict[str, bool]:
    return {a.name: a.ships_later for a in found}


def test_infrastructure_change_renders_branch_trackers_and_ships_later_for_pinned() -> None:
    repo = RepoSnapshot(build_reader())
    found = affected_clusters([FileChange("infrastructure/nginx/release.yaml")], repo, repo)
    # lab tracks main: rendered now; prod, stage, semver and nosource are pinned: next release
    assert _names(found) == {"lab": False, "prod": True, "stage": True, "semver": True}
    lab = next(a for a in found if a.name == "lab")
    assert lab.reasons == ("tracks branch main",)
    prod = next(a for a in found if a.name == "prod")
    assert "ships with the next release" in prod.describe() and "tag v0.9.0" in prod.describe()


def test_cluster_file_and_app_changes() -> None:
    repo = RepoSnapshot(build_reader())
    assert _names(affected_clusters([FileChange("clusters/lab/sync.yaml")], repo, repo)) == {"lab": False}
    found = affected_clusters([FileChange("apps/podinfo/release.yaml")], repo, repo)
    assert _names(found) == {"prod": False} and found[0].reasons == ("runs app podinfo",)
    assert affected_clusters([FileChange("README.md"), FileChange("clusters/README.md")], repo, repo) == []


def test_a_pinned_cluster_whose_own_file_changes_is_rendered_not_deferred() -> None:
    repo = RepoSnapshot(build_reader())
    found = affected_clusters([FileChange("infrastructure/x.yaml"), FileChange("clusters/prod/flux.yml")], repo, repo)
    assert _names(found)["prod"] is False


def test_renames_affect_the_old_and_the_new_cluster() -> None:
    base = _snapshot({"clusters/old/infra.yaml": cluster_file("old", "tag: v1")})
    head = _snapshot({"clusters/new/infra.yaml": cluster_file("new", "tag: v1")})
    change = FileChange("clusters/new/infra.yaml", previous="clusters/old/infra.yaml")
    assert _names(affected_clusters([change], base, head)) == {"new": False, "old": False}
    assert touches_fleet([change]) and not touches_fleet([FileChange("docs/x.md", "README.md")])


def test_an_app_removed_from_a_cluster_affects_it_through_the_base() -> None:
    apps = "resources:\n  - ../../../apps/podinfo\n"
    base = _snapshot({"clusters/a/infra.yaml": cluster_file("a", "branch: main"), "clusters/a/apps/kustomization.yaml": apps})
    head = _snapshot({"clusters/a/infra.yaml": cluster_file("a", "branch: main"),
                      "clusters/a/apps/kustomization.yaml": "resources: []\n"})
    assert _names(affected_clusters([FileChange("apps/podinfo/release.yaml")], base, head)) == {"a": False}


def _obj(kind: str, name: str, namespace: str = "ns", api: str = "v1", **spec) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, **spec}


def test_object_diff_added_removed_changed_with_prune() -> None:
    base = [AppliedObject(_obj("ConfigMap", "kept", data={"a": "1"})),
            AppliedObject(_obj("ConfigMap", "gone"), "Kustomization flux-system/apps", prune=True),
            AppliedObject(_obj("ConfigMap", "orphan"), "Kustomization flux-system/legacy", prune=False),
            AppliedObject(_obj("HelmRelease", "nginx", api="helm.toolkit.fluxcd.io/v2beta2", spec={"interval": "1m"}))]
    head = [AppliedObject(_obj("ConfigMap", "kept", data={"a": "1"})),
            AppliedObject(_obj("ConfigMap", "new")),
            AppliedObject(_obj("HelmRelease", "nginx", api="helm.toolkit.fluxcd.io/v2", spec={"interval": "5m"}))]
    changes = {(c.change, str(c.key)): c for c in diff_objects(base, head)}
    assert set(changes) == {("removed", "ConfigMap ns/gone"), ("removed", "ConfigMap ns/orphan"),
                            ("added", "ConfigMap ns/new"), ("changed", "HelmRelease ns/nginx")}
    release = changes[("changed", "HelmRelease ns/nginx")].diff
    assert "-  interval: 1m\n" in release and "+  interval: 5m\n" in release
    assert "+apiVersion: helm.toolkit.fluxcd.io/v2\n" in release  # a version bump is a change, not remove+add
    assert "Flux prunes it" in changes[("removed", "ConfigMap ns/gone")].describe()
    assert "left on the cluster" in changes[("removed", "ConfigMap ns/orphan")].describe()


def test_secret_values_never_reach_the_diff() -> None:
    base = [AppliedObject(_obj("Secret", "db", data={"password": "c2VjcmV0LW9sZA==", "user": "YWRtaW4="},
                               stringData={"token": "plain-old-token"}))]
    head = [AppliedObject(_obj("Secret", "db", data={"password": "c2VjcmV0LW5ldw==", "user": "YWRtaW4="},
                               stringData={"token": "plain-new-token"}))]
    added = [AppliedObject(_obj("Secret", "fresh", stringData={"key": "brand-new-value"}))]
    changes = diff_objects(base, head + added)
    text = json.dumps([c.diff for c in changes])
    for secret in ("c2VjcmV0LW9sZA==", "c2VjcmV0LW5ldw==", "YWRtaW4=", "plain-old-token", "plain-new-token", "brand-new-value"):
        assert secret not in text
    changed = next(c for c in changes if c.change == "changed").diff
    assert f"+  password: {REDACTED_CHANGED}" in changed and f"-  password: {REDACTED}" in changed
    assert "user" not in "".join(line for line in changed.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    # the same Secret with the same values is no change at all
    assert diff_objects(base, base) == []


def _check(n_objects: int, size: int) -> CheckResult:
    changes = diff_objects([], [AppliedObject(_obj("ConfigMap", f"cm-{i}", data={"v": "x" * size})) for i in range(n_objects)])
    return CheckResult("main", "feature", (
        ClusterCheck("test", "tracks branch main", tuple(changes), ("✓ clusters/test renders",)),
        ClusterCheck("demo", "pinned to tag v0.3.0: the infrastructure/ change ships with the next release", ships_later=True),
        ClusterCheck("prod", "clusters/prod/ changed", error="quality gate: ./infrastructure uses `${x}`, which prod does not set"),
    ))


def test_markdown_report_per_cluster_with_collapsible_diffs() -> None:
    text = to_markdown(_check(2, 5))
    assert text.startswith(MARKER)
    assert "| test | 🟡 2 added, 0 removed, 0 changed | tracks branch main |" in text
    assert "| demo | ⏭️ ships with the next release |" in text
    assert "ships with the next release; nothing changes on it with this PR." in text
    assert "❌ fluxbot check failed for prod" in text and "which prod does not set" in text
    assert text.count("<details>") == 2 == text.count("</details>")
    assert "```diff\n--- /dev/null\n+++ b/ConfigMap ns/cm-0" in text


def test_markdown_is_cut_below_githubs_comment_limit_with_a_note() -> None:
    result = _check(40, 3000)
    text = to_markdown(result)
    assert len(text) <= COMMENT_LIMIT
    assert "Diff truncated" in text and "object diff(s) not shown" in text
    assert text.count("<details>") == text.count("</details>") > 0
    assert text.count("```") % 2 == 0
    assert "which prod does not set" in text  # the failure shows whatever the diffs' size
    assert len(to_markdown(result, limit=5000)) <= 5000
    assert "Diff truncated" not in to_markdown(_check(2, 10))


def test_a_diff_holding_backticks_gets_a_longer_fence() -> None:
    changes = diff_objects([], [AppliedObject(_obj("ConfigMap", "md", data={"readme": "```sh\nrm -rf\n```"}))])
    text = to_markdown(CheckResult("a", "b", (ClusterCheck("test", "x", tuple(changes)),)))
    assert "````diff" in text


def test_json_report() -> None:
    data = to_json(_check(1, 3))
    assert data["passed"] is False
    test = data["clusters"][0]
    assert (test["cluster"], test["result"], test["counts"]) == ("test", "changed", {"added": 1, "removed": 0, "changed": 0})
    assert test["objects"][0]["name"] == "cm-0" and test["objects"][0]["diff"].startswith("--- /dev/null")
    assert [c["result"] for c in data["clusters"]] == ["changed", "ships-later", "failed"]
    json.dumps(data)


def test_the_layouts_directories_are_the_ones_watched() -> None:
    from commands.layout import Layout

    layout = Layout(infrastructure="platform/base", clusters="fleet")
    tree = {"fleet/lab/infra.yaml": cluster_file("lab", "branch: main").replace("./infrastructure/", "./platform/base/")}
    repo = RepoSnapshot(MemoryReader([tree]), layout=layout)
    assert touches_fleet([FileChange("platform/base/nginx/release.yaml")], layout)
    assert not touches_fleet([FileChange("infrastructure/nginx/release.yaml")], layout)
    assert _names(affected_clusters([FileChange("fleet/lab/infra.yaml")], repo, repo)) == {"lab": False}
    assert affected_clusters([FileChange("clusters/lab/infra.yaml")], repo, repo) == []
