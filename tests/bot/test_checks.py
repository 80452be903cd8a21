"""Quality gates on commits written without a checkout: git accepts the objects, renders are cached
by what they read, and a cached render is never wrong for changed content."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import git, say, tool



@pytest.fixture(autouse=True)
def _kubectl() -> None:
    tool("kubectl", "the quality gates render with `kubectl kustomize`")


@pytest.fixture
def kubectl_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a kubectl on PATH that logs the directory it renders, then runs the real one."""
    real = shutil.which("kubectl")
    wrapper = tmp_path / "bin" / "kubectl"
    wrapper.parent.mkdir()
    log = tmp_path / "kubectl.log"
    wrapper.write_text(f'#!/bin/sh\necho "$2" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{Path(real).parent}:/usr/bin:/bin")
    log.touch()
    return log


def rendered(log: Path) -> list[str]:
    """What kubectl rendered, as repo paths (the scratch dir stripped)."""
    return [line.split("fluxbot-render-", 1)[1].split("/tree/", 1)[1] for line in log.read_text().splitlines()]


def test_commits_are_valid_git_objects_with_sorted_trees(flux_demo: Path, make_bot) -> None:
    bot = make_bot(flux_demo)
    # `apps/` and `apps-base.yaml` side by side: git orders the file first ("-" < "/")
    assert "Opened: PR #1" in say(bot, "onboard prod-us like demo set meta_network_zone=dmz-123 meta_productive=true")
    assert "Opened: PR #2" in say(bot, "app remove podinfo from demo")
    git(flux_demo, "fsck", "--strict", "--no-dangling")
    listing = git(flux_demo, "ls-tree", "--name-only", "fluxbot/onboard-prod-us", "clusters/prod-us/").splitlines()
    assert listing == ["clusters/prod-us/apps-base.yaml", "clusters/prod-us/apps", "clusters/prod-us/infrastructure.yaml"]
    author = git(flux_demo, "log", "-1", "--format=%an <%ae>|%s", "fluxbot/onboard-prod-us")
    assert author.startswith("fluxbot <fluxbot@users.noreply.local>|")
    # the work tree and index of the repo were not touched: no checkout happened anywhere
    assert git(flux_demo, "status", "--porcelain") == ""


def test_the_infrastructure_of_a_tag_renders_once_for_every_cluster(example_repo: Path, make_bot, kubectl_calls) -> None:
    bot = make_bot(example_repo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to prod-eu")
    first = sorted(rendered(kubectl_calls))
    # the cluster, its apps (a Flux Kustomization of the repo), the tag's infrastructure and its nested layers
    assert first[:2] == ["clusters/prod-eu", "infrastructure"], first
    assert len(first) > 3 and all(p.startswith("infrastructure/") for p in first[2:]), first
    kubectl_calls.write_text("")
    # a new cluster at the same tag: its own directory renders, the tag's infrastructure is reused
    assert "Opened: PR #2" in say(bot, "onboard prod-us like prod-eu set meta_network_zone=eu-1 meta_productive=true")
    assert rendered(kubectl_calls) == ["clusters/prod-us"]
    assert "✓ infrastructure at v0.4.0 renders with prod-us's variables" in bot.forge.body(2)
    kubectl_calls.write_text("")
    # the same change again (a retry after closing): nothing to render
    say(bot, "pr close 1")
    assert "Opened: PR #3" in say(bot, "promote v0.4.0 to prod-eu")
    assert rendered(kubectl_calls) == []
    assert bot.forge.body(3).count("✓") == bot.forge.body(1).count("✓") == 3 + len(first)


def test_a_changed_tree_is_rendered_again_and_a_failure_is_cached_by_its_trees(flux_demo: Path, make_bot, kubectl_calls) -> None:
    bot = make_bot(flux_demo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    say(bot, "pr close 1")
    kubectl_calls.write_text("")
    # main changes something the cluster directory loads: its render is stale and runs again
    values = flux_demo / "clusters/demo/apps/values/podinfo.yaml"
    values.write_text(values.read_text() + "# tuned\n")
    git(flux_demo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "tune podinfo")
    assert "Opened: PR #2" in say(bot, "promote v0.4.0 to demo")
    assert sorted(rendered(kubectl_calls)) == ["clusters/demo", "clusters/demo/apps"]
    say(bot, "pr close 2")
    # a broken cluster directory fails, and fails again from the cache: a retry (#20: the Slack
    # pool has 8 workers) does not pay for the same failing render twice
    kustomization = flux_demo / "clusters/demo/apps/kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("resources:\n", "resources:\n  - ../../../apps/missing\n"))
    git(flux_demo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "break apps")
    kubectl_calls.write_text("")
    outs = [say(bot, "promote v0.4.0 to demo") for _ in range(2)]
    assert outs[0] == outs[1] and outs[0].startswith("✗ quality gate: clusters/demo does not render"), outs
    # the whole message, the repo path of what is missing, no scratch directory
    assert "apps/missing" in outs[0] and "fluxbot-render-" not in outs[0] and "/tmp/" not in outs[0], outs[0]
    assert rendered(kubectl_calls) == ["clusters/demo"]
    assert bot.forge.open_prs() == [] and git(flux_demo, "branch", "--list", "fluxbot/*") == ""
    # fixed again: the fixed trees render (the failure belonged to the broken ones)
    git(flux_demo, "revert", "--no-edit", "HEAD")
    assert "Opened: PR #3" in say(bot, "promote v0.4.0 to demo")


def test_the_render_cache_keeps_the_newest_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.git import render

    monkeypatch.setattr(render, "KEEP_RENDERS", 3)
    cache = render.RenderCache(tmp_path / "renders")
    for n in range(5):
        cache.put(f"key{n}", f"render {n}\n")
        time.sleep(0.01)  # distinct modification times
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == ["key2.yaml", "key3.yaml", "key4.yaml"]
    assert cache.get("key4") == "render 4\n" and cache.get("key0") is None
    assert (cache.hits, cache.misses) == (1, 1)
