"""`fluxbot check` on flux-demo (#18): hand-made changes rendered per affected cluster and diffed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import git, tool


@pytest.fixture(autouse=True)
def _kubectl() -> None:
    tool("kubectl", "the check renders with `kubectl kustomize`")


def _commit(repo: Path, branch: str, edits: dict[str, str | None], message: str = "a hand-made change") -> str:
    git(repo, "checkout", "-q", "-B", branch, "main")
    for path, content in edits.items():
        if content is None:
            git(repo, "rm", "-q", path)
        else:
            (repo / path).write_text(content)
            git(repo, "add", path)
    git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qm", message)
    git(repo, "checkout", "-q", "main")
    return branch


def _check(repo: Path, tmp_path: Path, capsys, head: str, fmt: str = "json", base: str = "main") -> tuple[int, str]:
    code = main(["check", "--repo", str(repo), "--base", base, "--head", head, "--format", fmt,
                 "--state", str(tmp_path / "check-state")])
    return code, capsys.readouterr().out


def _cluster(report: dict, name: str) -> dict:
    return next(c for c in report["clusters"] if c["cluster"] == name)


def test_a_helmrelease_change_in_infrastructure_renders_test_and_ships_later_for_demo(flux_demo: Path, tmp_path: Path, capsys) -> None:
    release = (flux_demo / "infrastructure/nginx/release.yaml").read_text()
    assert 'type: "NodePort"' in release
    _commit(flux_demo, "nginx-lb", {"infrastructure/nginx/release.yaml": release.replace('type: "NodePort"', 'type: "LoadBalancer"')})
    code, out = _check(flux_demo, tmp_path, capsys, "nginx-lb")
    report = json.loads(out)
    assert code == 0 and report["passed"] is True
    test, demo = _cluster(report, "test"), _cluster(report, "demo")
    assert (test["result"], test["reason"]) == ("changed", "tracks branch main")
    assert test["counts"] == {"added": 0, "removed": 0, "changed": 1}
    changed = test["objects"][0]
    assert (changed["kind"], changed["namespace"], changed["name"]) == ("HelmRelease", "ingress-nginx", "ingress-nginx")
    assert "-        type: NodePort\n+        type: LoadBalancer\n" in changed["diff"]
    assert "${" not in changed["diff"]  # rendered with test's variables, as Flux applies it
    assert demo["result"] == "ships-later" and "ships with the next release" in demo["reason"]
    assert "tag v0.3.0" in demo["reason"]
    # the same as the PR comment
    code, markdown = _check(flux_demo, tmp_path, capsys, "nginx-lb", "markdown")
    assert "| demo | ⏭️ ships with the next release |" in markdown
    assert "<details><summary>changed: HelmRelease ingress-nginx/ingress-nginx" in markdown


def test_removing_an_app_from_a_cluster_reports_its_removed_objects(flux_demo: Path, tmp_path: Path, capsys) -> None:
    empty = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"
    _commit(flux_demo, "drop-podinfo", {"clusters/demo/apps/kustomization.yaml": empty,
                                        "clusters/demo/apps/values/podinfo.yaml": None})
    code, out = _check(flux_demo, tmp_path, capsys, "drop-podinfo")
    report = json.loads(out)
    assert code == 0
    assert [c["cluster"] for c in report["clusters"]] == ["demo"]
    demo = report["clusters"][0]
    removed = {(o["kind"], o["namespace"], o["name"]) for o in demo["objects"] if o["change"] == "removed"}
    assert removed == {("Namespace", "", "podinfo"), ("HelmRepository", "podinfo", "podinfo"), ("HelmRelease", "podinfo", "podinfo")}
    assert all(o["prune"] for o in demo["objects"])  # applied by Kustomizations with prune: true
    assert demo["counts"]["added"] == 0
    code, text = _check(flux_demo, tmp_path, capsys, "drop-podinfo", "text")
    assert "removed: HelmRelease podinfo/podinfo (Flux prunes it)" in text


def test_an_undefined_variable_fails_the_check(flux_demo: Path, tmp_path: Path, capsys) -> None:
    top = (flux_demo / "infrastructure/kustomization.yaml").read_text()
    anchor = '          meta_network_zone: "${meta_network_zone}"\n'
    assert anchor in top
    _commit(flux_demo, "new-var", {"infrastructure/kustomization.yaml":
                                   top.replace(anchor, anchor + '          meta_region: "${meta_region}"\n')})
    code, out = _check(flux_demo, tmp_path, capsys, "new-var")
    report = json.loads(out)
    assert code == 1 and report["passed"] is False
    test = _cluster(report, "test")
    assert test["result"] == "failed" and "`${meta_region}`" in test["error"] and "`test` does not set" in test["error"]
    assert _cluster(report, "demo")["result"] == "ships-later"


def test_an_undefined_variable_in_a_nested_kustomization_fails_naming_the_object(flux_demo: Path, tmp_path: Path, capsys) -> None:
    release = (flux_demo / "infrastructure/nginx/release.yaml").read_text()
    _commit(flux_demo, "replicas", {"infrastructure/nginx/release.yaml": release.replace(
        '        type: "NodePort"\n', '        type: "NodePort"\n      replicaCount: "${infrastructure_nginx_replicas}"\n')})
    code, out = _check(flux_demo, tmp_path, capsys, "replicas", "markdown")
    assert code == 1
    assert "❌ fluxbot check failed for test" in out
    assert "`${infrastructure_nginx_replicas}`" in out and "HelmRelease ingress-nginx/ingress-nginx" in out


def test_a_change_outside_the_fleet_renders_nothing(flux_demo: Path, tmp_path: Path, capsys) -> None:
    _commit(flux_demo, "docs", {"README.md": "# docs only\n"})
    code, out = _check(flux_demo, tmp_path, capsys, "docs", "text")
    assert code == 0 and "nothing to render" in out


def test_a_ref_that_names_no_commit_is_a_clear_error(flux_demo: Path, tmp_path: Path, capsys) -> None:
    code = main(["check", "--repo", str(flux_demo), "--base", "main", "--head", "no-such-branch",
                 "--state", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 2 and "`no-such-branch` names no commit" in captured.err and "Traceback" not in captured.err
    code = main(["check", "--repo", str(tmp_path), "--base", "main", "--head", "main"])
    assert code == 2 and "is not a git repository" in capsys.readouterr().err


def test_a_detached_head_that_no_branch_holds_is_checked(flux_demo: Path, tmp_path: Path, capsys) -> None:
    # CI checks out the PR's merge commit detached: no branch of the repo names it.
    git(flux_demo, "checkout", "-q", "--detach")
    apps = flux_demo / "clusters/demo/apps/values/podinfo.yaml"
    apps.write_text(apps.read_text().replace("podinfo.production", "podinfo.example.com"))
    git(flux_demo, "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qam", "host")
    code, out = _check(flux_demo, tmp_path, capsys, "HEAD")
    demo = _cluster(json.loads(out), "demo")
    assert code == 0 and demo["counts"]["changed"] == 1
    assert "-  - host: podinfo.production\n+  - host: podinfo.example.com\n" in demo["objects"][0]["diff"].replace("    ", "")


def test_pr_show_prints_the_check_and_the_file_diff_of_a_local_pr(flux_demo: Path, make_bot) -> None:
    from tests.conftest import say

    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    shown = say(bot, "pr show 1")
    assert "PR #1: fluxbot check passed: changes demo" in shown
    assert "demo: " in shown and "(clusters/demo/ changed)" in shown
    assert "✓ infrastructure at v0.4.0 renders with demo's variables" in shown
    # v0.4.0 brings the layer of Flux Kustomizations per component
    assert "demo: added Kustomization flux-system/nginx" in shown
    assert "Files changed:" in shown and "-    tag: v0.3.0" in shown and "+    tag: v0.4.0" in shown
    planned = say(bot, "plan 1")
    assert "demo: added Kustomization flux-system/nginx" in planned and "Files changed:" not in planned
    assert "there is no PR #9" in say(bot, "plan 9")
    assert "is not a PR number" in say(bot, "pr show x")


def test_pr_show_is_a_read_where_merge_is_a_write(flux_demo: Path, make_bot) -> None:
    from commands.permissions import Policy
    from tests.conftest import say

    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo")
    bot.policy = Policy(read_channels=("*",))  # reads everywhere, no one may write
    assert "you may not run `pr`" in say(bot, "pr merge 1")
    assert "fluxbot check passed" in say(bot, "pr show 1")


def test_flux_plan_in_slack_answers_the_summary_per_cluster_with_the_prs_link(slack_app, slack_standin) -> None:
    from commands.permissions import Policy, Rule

    harness = slack_app(Policy(rules=(Rule(actions=("rollback",), clusters=("*",), users=("U_ALICE",)),),
                               read_channels=("C_OPS",)))
    harness.command("rollback demo")
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])
    harness.command("plan 1", user="U_BOB")  # a read: anyone in a read channel
    answer = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "PR #1: fluxbot check" in p["text"]])[0]
    header = answer["blocks"][0]["text"]["text"]
    assert "PR #1: fluxbot check passed: changes demo" in header
    section = next(b for b in answer["blocks"] if b["type"] == "section")["text"]["text"]
    assert section.startswith("🟡 demo: ") and "(clusters/demo/ changed)" in section
    assert len(section) <= 3000  # Slack's cap on a section's text
    buttons = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    others = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section"]
    assert any("PR #1" in e["text"]["text"] for e in buttons) or any("local://" in t for t in others)


def test_renders_are_shared_between_base_and_head_and_only_affected_clusters_render(
        flux_demo: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.bot.test_checks import rendered

    real = tool("kubectl", "the check renders with `kubectl kustomize`")
    log = tmp_path / "kubectl.log"
    wrapper = tmp_path / "bin" / "kubectl"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$2" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:/usr/bin:/bin")
    log.touch()
    values = (flux_demo / "clusters/demo/apps/values/podinfo.yaml").read_text()
    _commit(flux_demo, "host", {"clusters/demo/apps/values/podinfo.yaml": values.replace("podinfo.production", "podinfo.example")})
    code, out = _check(flux_demo, tmp_path, capsys, "host")
    assert code == 0 and [c["cluster"] for c in json.loads(out)["clusters"]] == ["demo"]
    calls = rendered(log)
    assert not any(path.startswith("clusters/test") for path in calls)  # one cluster changed: one cluster renders
    # demo's directory differs between base and head (2 renders, its apps layer too); the tag's
    # infrastructure and its layers are the same trees on both sides: each rendered once
    assert calls.count("clusters/demo") == 2 and calls.count("infrastructure") == 1
    assert all(calls.count(path) == 1 for path in calls if path.startswith("infrastructure"))
    log.write_text("")
    assert _check(flux_demo, tmp_path, capsys, "host")[0] == 0
    assert rendered(log) == []  # warm: every render comes from the cache
