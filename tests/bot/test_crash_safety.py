"""SIGKILL at each step of a promotion, then a restart: answered, one PR, no orphan branch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import branches


def shell(repo: Path, state: Path, text: str, failpoint: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLUXBOT_FAILPOINT": failpoint}
    return subprocess.run([sys.executable, "-m", "bot.cli", "shell", "--repo", str(repo), "--state", str(state),
                           "--user", "alice"], input=text, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("point", ["after-push", "after-pr", "before-finish"])
def test_killed_mid_promotion_then_restarted(example_repo: Path, tmp_path: Path, point: str) -> None:
    state = tmp_path / "state"
    killed = shell(example_repo, state, "promote v0.4.0 to prod-eu\n", point)
    assert killed.returncode == -signal.SIGKILL
    restarted = shell(example_repo, state, "prs\n")
    assert restarted.returncode == 0, restarted.stderr
    out = restarted.stdout
    assert "> promote v0.4.0 to prod-eu  (asked by alice before fluxbot stopped; answered now)" in out
    assert "PR #1" in out and "Traceback" not in out + restarted.stderr
    assert "1  prod-eu  promotion" in out and "2  " not in out  # exactly one PR
    assert branches(example_repo) == ["fluxbot/promote-prod-eu-v0.4.0"]  # and no orphan branch
    again = shell(example_repo, state, "")
    assert "answered now" not in again.stdout  # answered once, not on every start


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # replicas share PostgreSQL
@pytest.mark.parametrize("point", ["after-push", "after-pr", "before-finish"])
def test_a_replica_killed_mid_promotion_is_finished_by_another_once_its_lease_runs_out(
        example_repo: Path, tmp_path: Path, store_url: str, point: str) -> None:
    """#19: two replicas on one PostgreSQL database, each with its own git mirror. The one holding
    the request dies; the other takes the request over when the lease (2 s here) runs out."""
    import time

    config = tmp_path / "fluxbot.yaml"
    config.write_text(f"store:\n  url: '{store_url}'\n  lease_seconds: 2\n")

    def replica(name: str, text: str, failpoint: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLUXBOT_FAILPOINT": failpoint}
        return subprocess.run([sys.executable, "-m", "bot.cli", "shell", "--config", str(config), "--repo",
                               str(example_repo), "--state", str(tmp_path / name), "--user", "alice"],
                              input=text, capture_output=True, text=True, env=env, timeout=120)

    killed = replica("a", "promote v0.4.0 to prod-eu\n", point)
    assert killed.returncode == -signal.SIGKILL
    time.sleep(2.5)  # (that a running lease is left alone is held in tests/bot/test_store.py, without clocks)
    heir = replica("b", "prs\n")
    assert heir.returncode == 0, heir.stderr
    assert "> promote v0.4.0 to prod-eu  (asked by alice before fluxbot stopped; answered now)" in heir.stdout
    assert "1  prod-eu  promotion" in heir.stdout and "2  " not in heir.stdout  # exactly one PR
    assert branches(example_repo) == ["fluxbot/promote-prod-eu-v0.4.0"]
    again = replica("c", "")
    assert "answered now" not in again.stdout  # answered once
