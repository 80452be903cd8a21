"""onboard, app, release and freeze on the flux-demo repo, with the quality gates before every PR."""
from __future__ import annotations

from pathlib import Path

import pytest

from commands.yamledit import load_documents
from tests.conftest import branches, git, say



def changed(repo: Path, branch: str) -> list[str]:
    diff = git(repo, "diff", f"main...{branch}")
    return [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]


def test_onboard_like_an_existing_cluster(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "onboard prod-us like demo set meta_network_zone=dmz-123 meta_productive=true")
    assert "Opened: PR #1 Onboard prod-us at v0.4.0" in out, out
    branch = "fluxbot/onboard-prod-us"
    assert branches(flux_demo) == [branch]
    files = git(flux_demo, "diff", "--name-only", f"main...{branch}").splitlines()
    assert files == ["clusters/prod-us/apps-base.yaml", "clusters/prod-us/apps/kustomization.yaml",
                     "clusters/prod-us/apps/values/podinfo.yaml", "clusters/prod-us/infrastructure.yaml"]
    infra = load_documents(git(flux_demo, "show", f"{branch}:clusters/prod-us/infrastructure.yaml"))
    assert infra[0]["spec"]["ref"] == {"tag": "v0.4.0"}
    assert infra[0]["spec"]["url"] == "https://github.com/f4z3r/flux-demo.git"
    variables = infra[1]["spec"]["postBuild"]["substitute"]
    assert variables["meta_cluster_name"] == "prod-us" and variables["meta_network_zone"] == "dmz-123"
    assert variables["meta_productive"] == "true"
    body = bot.forge.body(1)
    assert "flux bootstrap github --owner=f4z3r --repository=flux-demo --branch=main --path=clusters/prod-us" in body
    assert "✓ clusters/prod-us renders with `kubectl kustomize`" in body
    assert "✓ infrastructure at v0.4.0 renders with prod-us's variables, none undefined" in body


def test_onboard_without_a_required_variable_is_refused_naming_it(flux_demo: Path, make_bot) -> None:
    out = say(make_bot(flux_demo), "onboard prod-us set meta_cluster_name=prod-us")
    assert "needs `meta_network_zone`" in out and "`meta_network_zone=...`" in out
    assert branches(flux_demo) == []


@pytest.mark.parametrize("text, says", [
    ("onboard demo like test", "already exists"),
    ("onboard x like nope", "no cluster `nope`"),
    ("onboard x set 9bad=1", "not a `name=value` setting"),
    ("onboard x at v9.0.0 like demo", "no release `v9.0.0`"),
])
def test_onboard_refusals(flux_demo: Path, make_bot, text: str, says: str) -> None:
    assert says in say(make_bot(flux_demo), text)
    assert branches(flux_demo) == []


def test_app_add_and_remove_are_minimal_edits(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "app remove podinfo from demo")
    assert "Opened: PR #1 Remove podinfo from demo" in out, out
    # both lists had only podinfo, so each becomes an empty list rather than null
    assert changed(flux_demo, "fluxbot/app-remove-podinfo-demo")[:9] == [
        "-resources:", "-  - ../../../apps/podinfo", "-patches:", "-  - path: ./values/podinfo.yaml", "-    target:",
        "-      kind: HelmRelease", "-      name: podinfo", "+resources: []", "+patches: []",
    ]
    removed = git(flux_demo, "diff", "--name-status", "main...fluxbot/app-remove-podinfo-demo").splitlines()
    assert "D\tclusters/demo/apps/values/podinfo.yaml" in removed
    say(bot, "pr merge 1")

    out = say(bot, "app add podinfo to demo set ingress.enabled:=false replicaCount:=3")
    assert "Opened: PR #2 Add podinfo to demo" in out, out
    branch = "fluxbot/app-add-podinfo-demo"
    assert changed(flux_demo, branch) == [
        "-resources: []", "-patches: []", "+resources:", "+  - ../../../apps/podinfo", "+patches:",
        "+  - path: ./values/podinfo.yaml", "+    target:", "+      kind: HelmRelease", "+      name: podinfo",
        "+apiVersion: helm.toolkit.fluxcd.io/v2", "+kind: HelmRelease", "+metadata:", "+  name: podinfo",
        "+  namespace: podinfo", "+spec:", "+  values:", "+    ingress:", "+      enabled: false", "+    replicaCount: 3",
    ]
    values = load_documents(git(flux_demo, "show", f"{branch}:clusters/demo/apps/values/podinfo.yaml"))[0]
    assert values["spec"]["values"] == {"ingress": {"enabled": False}, "replicaCount": 3}  # typed with `:=`


@pytest.mark.parametrize("text, says", [
    ("app add nginx to demo", "no app `nginx` under apps/"),
    ("app add podinfo to demo", "already runs on `demo`"),
    ("app remove podinfo from test", "has no clusters/test/apps/kustomization.yaml"),
    ("app add podinfo to demo set a..b=1", "`a..b` is not a key"),
])
def test_app_refusals(flux_demo: Path, make_bot, text: str, says: str) -> None:
    assert says in say(make_bot(flux_demo), text)
    assert branches(flux_demo) == []


def test_release_moves_unreleased_and_tags_the_merge_commit(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    out = say(bot, "release v0.5.0")
    assert "Opened: PR #1 Release v0.5.0" in out, out
    changelog = git(flux_demo, "show", "fluxbot/release-v0.5.0:CHANGELOG.md")
    unreleased, rest = changelog.split("## [0.5.0]", 1)
    assert "rbac-manager" not in unreleased and "rbac-manager" in rest.split("## [0.4.0]")[0]
    assert "[unreleased]: https://github.com/f4z3r/flux-demo/compare/v0.5.0...HEAD" in changelog
    assert "[0.5.0]: https://github.com/f4z3r/flux-demo/compare/v0.4.0...v0.5.0" in changelog
    merged = say(bot, "pr merge 1")
    assert "as `v0.5.0`" in merged
    merge_commit = git(flux_demo, "rev-parse", "main")
    assert git(flux_demo, "rev-parse", "v0.5.0^{commit}") == merge_commit
    assert git(flux_demo, "cat-file", "-t", "v0.5.0") == "tag"  # annotated
    assert "v0.5.0   " in say(bot, "versions")


@pytest.mark.parametrize("text, says", [
    ("release v0.4.0", "not newer than the latest release `v0.4.0`"),
    ("release v0.3.9", "not newer"),
    ("release next", "not a semantic version"),
])
def test_release_refusals(flux_demo: Path, make_bot, text: str, says: str) -> None:
    assert says in say(make_bot(flux_demo), text)


def test_release_with_an_empty_unreleased_section_is_refused(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    say(bot, "release v0.5.0")
    say(bot, "pr merge 1")
    assert "`Unreleased` section of CHANGELOG.md is empty" in say(bot, "release v0.6.0")


def test_a_change_that_breaks_rendering_is_refused_and_leaves_nothing(flux_demo: Path, make_bot) -> None:
    broken = flux_demo / "infrastructure" / "kustomization.yaml"
    broken.write_text(broken.read_text().replace("- nginx/base.yaml", "- nginx/missing.yaml"))
    git(flux_demo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "break it")
    git(flux_demo, "tag", "v0.5.0")
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith("✗ quality gate: infrastructure/ at v0.5.0 does not render")
    assert "missing.yaml" in out
    assert branches(flux_demo) == [] and bot.forge.open_prs() == []


def test_freeze_refuses_writes_but_not_rollbacks(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    assert "Froze demo" in say(bot, "freeze demo because incident INC-7", "carol")
    refused = say(bot, "promote v0.4.0 to demo")
    assert "`demo` is frozen by carol: incident INC-7" in refused and "`unfreeze demo`" in refused
    assert "Opened: PR #1 Roll back demo" in say(bot, "rollback demo")
    say(bot, "pr close 1")
    say(bot, "freeze all because change freeze for the holidays")
    assert "all clusters are frozen by alice" in say(bot, "onboard x like demo")
    say(bot, "unfreeze all")
    say(bot, "unfreeze demo")
    assert "Opened: PR #2" in say(bot, "promote v0.4.0 to demo")
    assert "`demo` is not frozen" in say(bot, "unfreeze demo")


def test_unlock_clears_a_stale_lock(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo", "bob")
    assert "already has an open change" in say(bot, "rollback demo")
    assert "Closed PR #1" in say(bot, "unlock demo", "admin")
    assert branches(flux_demo) == []
    assert "Opened: PR #2" in say(bot, "rollback demo")
    assert "has no open change holding its lock" in say(bot, "unlock test")


def test_audit_shows_who_did_what(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    say(bot, "promote v0.4.0 to demo", "bob")
    say(bot, "promote v9.9.9 to demo", "eve")
    say(bot, "status", "carol")
    rows = [line.split() for line in say(bot, "audit demo").splitlines()[2:]]
    assert [(r[1], r[-1]) for r in rows] == [("eve", "refused"), ("bob", "ok")]
    assert "carol" in say(bot, "audit")
