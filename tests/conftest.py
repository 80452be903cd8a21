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
