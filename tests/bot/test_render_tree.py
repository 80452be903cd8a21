"""Checks follow the tree Flux applies (#13): nested Flux Kustomizations of the repo's own source
render too, at the pinned revision and with their own substitutions, on the real flux-demo history."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, say, tool


@pytest.fixture(autouse=True)
def _kubectl() -> None:
    tool("kubectl", "the quality gates render with `kubectl kustomize`")


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", message)


def release_from(repo: Path, base: str, tag: str, edits: dict[str, str]) -> None:
    """Tag `tag` on a side branch made from `base` with `edits` (path -> new content), then back to main."""
    git(repo, "checkout", "-q", "-b", f"release-{tag}", base)
    for path, text in edits.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    commit_all(repo, f"release {tag}")
    git(repo, "tag", "-a", tag, "-m", tag)
    git(repo, "checkout", "-q", "main")


def replaced(repo: Path, ref: str, path: str, old: str, new: str) -> str:
    text = git(repo, "show", f"{ref}:{path}") + "\n"
    assert old in text, f"{old!r} not in {path} at {ref}"
    return text.replace(old, new)


def no_change_made(bot, repo: Path) -> None:
    assert bot.forge.open_prs() == []
    assert git(repo, "branch", "--list", "fluxbot/*") == ""


def test_v040_renders_every_nested_layer_and_the_pr_reports_each(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    body = bot.forge.body(1)
    # the first level: the indirection layer (three Flux Kustomizations and what patches them)
    assert "✓ infrastructure at v0.4.0 renders with demo's variables, none undefined (3 objects)" in body, body
    # each nested layer renders at the pinned tag with the substitutions its parent patched in
    for name in ("nginx", "vault-secrets-operator", "external-secrets-operator"):
        assert f"Kustomization flux-system/{name}: ./infrastructure/{name} at v0.4.0 renders, none undefined" in body, body
    assert "objects in all" in body


def test_a_variable_only_a_nested_layer_uses_blocks_the_pr(flux_demo: Path, make_bot) -> None:
    release = "infrastructure/nginx/release.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        release: replaced(flux_demo, "v0.4.0", release, "type: \"NodePort\"", "type: \"${meta_required_new}\""),
    })
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith("✗ quality gate:"), out
    assert "`${meta_required_new}`" in out and "HelmRelease ingress-nginx/ingress-nginx" in out
    assert release in out and "Kustomization flux-system/nginx" in out
    no_change_made(bot, flux_demo)


def test_the_cluster_setting_a_variable_does_not_reach_a_nested_layer(flux_demo: Path, make_bot) -> None:
    # Flux gives the nested Kustomization only what its own postBuild.substitute says (patched by
    # the parent), not the cluster's variables: setting it on the cluster does not help.
    release = "infrastructure/nginx/release.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        release: replaced(flux_demo, "v0.4.0", release, "type: \"NodePort\"", "type: \"${meta_required_new}\""),
    })
    cluster = flux_demo / "clusters/demo/infrastructure.yaml"
    cluster.write_text(cluster.read_text().replace('meta_productive: "true"', 'meta_productive: "true"\n      meta_required_new: "x"'))
    commit_all(flux_demo, "set the new variable on the cluster only")
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert "`${meta_required_new}`" in out and "Kustomization flux-system/nginx" in out, out


def test_a_nested_layer_that_renders_an_ancestor_is_a_refused_cycle(flux_demo: Path, make_bot) -> None:
    base = "infrastructure/nginx/base.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        base: replaced(flux_demo, "v0.4.0", base, "path: ./infrastructure/nginx", "path: ./infrastructure/"),
    })
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.5.0 to demo")
    assert out.startswith("✗ quality gate:") and "cycle" in out and "Kustomization flux-system/nginx" in out, out
    no_change_made(bot, flux_demo)


def test_nesting_is_bounded(flux_demo: Path, make_bot, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.git import checks

    monkeypatch.setattr(checks, "MAX_DEPTH", 1)
    bot = make_bot(flux_demo)
    out = say(bot, "promote v0.4.0 to demo")
    assert out.startswith("✗ quality gate:") and "nested deeper than 1" in out, out
    no_change_made(bot, flux_demo)


def test_diff_sees_a_chart_change_in_a_nested_layer(flux_demo: Path, make_bot) -> None:
    # Components are every HelmRelease under infrastructure/, whichever layer applies it.
    release = "infrastructure/nginx/release.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        release: replaced(flux_demo, "v0.4.0", release, 'version: "*"', 'version: "4.11.0"'),
    })
    out = say(make_bot(flux_demo), "diff v0.4.0 v0.5.0")
    components = out.split("*Components*", 1)[1].split("*Files", 1)[0]
    assert "ingress-nginx" in components and "4.11.0" in components, out


def test_a_layer_with_substitute_from_says_its_variables_were_not_checked(flux_demo: Path, make_bot) -> None:
    # Values from ConfigMaps or Secrets on the cluster are not visible here: the PR says so instead
    # of claiming "none undefined" or refusing what Flux may well resolve.
    base, release = "infrastructure/nginx/base.yaml", "infrastructure/nginx/release.yaml"
    release_from(flux_demo, "v0.4.0", "v0.5.0", {
        base: replaced(flux_demo, "v0.4.0", base, "  wait: true\n",
                       "  wait: true\n  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: nginx-vars\n"),
        release: replaced(flux_demo, "v0.4.0", release, 'type: "NodePort"', 'type: "${from_the_cluster}"'),
    })
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.5.0 to demo")
    body = bot.forge.body(1)
    assert "Kustomization flux-system/nginx: ./infrastructure/nginx at v0.5.0 renders; variables from " \
           "substituteFrom are not visible here and were not checked" in body, body


def test_an_infrastructure_the_cluster_render_does_not_apply_is_named_as_not_rendered(flux_demo: Path, make_bot) -> None:
    # A kustomization.yaml in the cluster directory that leaves infrastructure.yaml out: Flux does not
    # apply the infrastructure from there, and the PR says that it was not rendered.
    (flux_demo / "clusters/demo/kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - flux-system\n  - apps-base.yaml\n")
    commit_all(flux_demo, "demo applies only flux-system and apps")
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    body = bot.forge.body(1)
    assert "not rendered: infrastructure/ at v0.4.0 (no Flux Kustomization in the render of clusters/demo applies it " \
           "from GitRepository `infrastructure`)" in body, body
    assert "none undefined" not in body
