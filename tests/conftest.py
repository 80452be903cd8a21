"""Shared fixtures: the flux-demo bundle from ../shared, the example repo, and a wired bot."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.config import Settings
from bot.example_repo import write_example_repo

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def shared_file(relative: str) -> Path:
    """A file from ../shared; in CI its absence fails the test, elsewhere it skips it."""
    path = SHARED / relative
    if not path.exists():
        reason = f"{path} is missing (the project's ../shared fixtures are not beside this clone)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def branches(repo: Path) -> list[str]:
    """Local branches of a repo other than main."""
    out = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    return [b for b in out.splitlines() if b != "main"]


@pytest.fixture(scope="session")
def _example_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_repo(tmp_path_factory.mktemp("template") / "fleet")


@pytest.fixture
def example_repo(tmp_path: Path, _example_template: Path) -> Path:
    """A fresh working copy of the example mono-repo (test, demo, prod-eu; v0.1.0..v0.4.0)."""
    target = tmp_path / "fleet"
    shutil.copytree(_example_template, target, symlinks=True)
    return target


@pytest.fixture
def flux_demo(tmp_path: Path) -> Path:
    """A clone of ../shared/fixtures/flux-demo.bundle with `main` checked out."""
    bundle = shared_file("fixtures/flux-demo.bundle")
    target = tmp_path / "flux-demo"
    git(tmp_path, "clone", "-q", str(bundle), str(target))
    git(target, "checkout", "-q", "main")
    return target


@pytest.fixture
def make_bot(tmp_path: Path):
    """Build a local-forge bot for a repo, with its state under the test's tmp dir."""
    from bot.cli import build_bot

    def make(repo: Path, **overrides):
        settings = Settings(repo=str(repo), state_dir=tmp_path / f"state-{repo.name}", **overrides)
        return build_bot(settings)

    return make


GITHUB_TOKEN = "ghp_standin_token_0123456789"


@pytest.fixture
def github_standin(tmp_path: Path):
    """A GitHub REST stand-in whose repository is a bare clone of the flux-demo bundle."""
    import json

    from tests.standins.github import GitHubStandIn

    payloads = shared_file("fixtures/payloads/github/pull_request.opened.json")
    example = json.loads(payloads.read_text())
    bundle = shared_file("fixtures/flux-demo.bundle")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(bundle), str(bare))
    standin = GitHubStandIn("platform", "flux-demo", bare, {
        "pull_request": example["pull_request"], "repository": example["repository"],
    }).start()
    yield standin
    standin.stop()


@pytest.fixture
def github_bot(github_standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A bot wired to the GitHub stand-in through the real PyGithub client."""
    from bot.cli import build_bot
    from bot.config import ForgeSettings

    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)

    def make(**forge):
        settings = Settings(
            state_dir=tmp_path / "github-state",
            forge=ForgeSettings(**{
                "type": "github", "repository": github_standin.full_name, "base_url": github_standin.base_url,
                "git_url": str(github_standin.bare_repo), "seconds_between_writes": 0, **forge,
            }),
        )
        return build_bot(settings)

    return make
