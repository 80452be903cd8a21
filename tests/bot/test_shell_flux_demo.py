"""The core flow on the real flux-demo bundle, driven through `fluxbot shell` as a user would."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import branches, git


def shell(repo: Path, state: Path, *lines: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "shell", "--repo", str(repo), "--state", str(state), "--user", "tester"],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_promote_is_one_branch_with_a_one_line_diff(flux_demo: Path, tmp_path: Path) -> None:
    head = git(flux_demo, "rev-parse", "main")
    run = shell(flux_demo, tmp_path / "s", "promote v0.4.0 to demo")
    assert run.returncode == 0, run.stderr
    assert "Opened: PR #1 Promote demo to v0.4.0" in run.stdout
    assert branches(flux_demo) == ["fluxbot/promote-demo-v0.4.0"]
    diff = git(flux_demo, "diff", "main...fluxbot/promote-demo-v0.4.0")
    changed = [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]
    assert changed == ["-    tag: v0.3.0", "+    tag: v0.4.0"]
    assert "clusters/demo/infrastructure.yaml" in git(flux_demo, "diff", "--name-only", "main...fluxbot/promote-demo-v0.4.0")
    message = git(flux_demo, "log", "-1", "--format=%B", "fluxbot/promote-demo-v0.4.0")
    assert message.startswith("chore(demo): promote infrastructure to v0.4.0")
    assert "Requested-by: tester" in message
    assert git(flux_demo, "rev-parse", "main") == head
    assert git(flux_demo, "status", "--porcelain") == ""


def test_rollback_after_closing_proposes_the_previous_pin(flux_demo: Path, tmp_path: Path) -> None:
    run = shell(flux_demo, tmp_path / "s", "promote v0.4.0 to demo", "pr close 1", "rollback demo", "prs")
    assert run.returncode == 0, run.stderr
    assert "Closed PR #1" in run.stdout
    assert "Opened: PR #2 Roll back demo to v0.2.0" in run.stdout
    assert branches(flux_demo) == ["fluxbot/rollback-demo-v0.2.0"]
    assert "+    tag: v0.2.0" in git(flux_demo, "diff", "main...fluxbot/rollback-demo-v0.2.0").splitlines()
    assert "2  demo     rollback" in run.stdout


@pytest.mark.parametrize(
    "command, says",
    [
        ("promote v0.4.0 to test", "tracks the branch `main`"),
        ("promote v9.9.9 to demo", "no release `v9.9.9`"),
        ("promote v0.4.0 to ../demo", "not a valid cluster name"),
        ("promote v0.3.0 to demo", "already pinned"),
        ("promote v0.1.0 to demo", "rollback demo to v0.1.0"),
        ("promote v0.4.0 to dmeo", "did you mean `demo`"),
        ("rollback test", "tracks the branch"),
    ],
)
def test_refusals_leave_nothing_behind(flux_demo: Path, tmp_path: Path, command: str, says: str) -> None:
    head = git(flux_demo, "rev-parse", "main")
    run = shell(flux_demo, tmp_path / "s", command, "prs")
    assert run.returncode == 0
    assert says in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert "No open fluxbot changes" in run.stdout
    assert branches(flux_demo) == []
    assert git(flux_demo, "rev-parse", "main") == head
    assert git(flux_demo, "status", "--porcelain") == ""


def test_status_and_versions_on_flux_demo(flux_demo: Path, tmp_path: Path) -> None:
    run = shell(flux_demo, tmp_path / "s", "status", "versions", "status demo")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("  demo ", "  test "))}
    assert rows["demo"] == ["demo", "v0.3.0", "yes", "1"]
    assert rows["test"] == ["test", "branch", "main", "unknown", "-"]  # no meta_productive: fails closed
    assert "v0.4.0   " in out and "Added indirection layer to support dependencies between components." in out
    assert "Apps:           podinfo (values)" in out
