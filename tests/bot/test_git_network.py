"""Git network calls are bounded (#20): an origin that accepts but never answers times out into the
outage path, and the mirror lock is not held across the network, so reads proceed from the mirror."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.git import workspace as workspace_module
from bot.git.workspace import OriginUnavailable, Workspace
from tests.conftest import git
from tests.standins.tcp import SilentListener


@pytest.fixture
def stalled():
    origin = SilentListener()
    yield origin
    origin.close()


def mirrored(flux_demo: Path, tmp_path: Path, url: str) -> Workspace:
    """A workspace whose mirror was cloned from flux-demo, and whose origin then became `url`."""
    workspace = Workspace(str(flux_demo), tmp_path / "cache")
    workspace.reader()
    git(workspace.mirror_path, "remote", "set-url", "origin", url)
    workspace.origin = url
    return workspace


def test_a_stalled_origin_times_out_and_other_reads_proceed_from_the_mirror(
        flux_demo: Path, tmp_path: Path, stalled: SilentListener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace_module, "GIT_NETWORK_TIMEOUT_SECONDS", 3.0)
    workspace = mirrored(flux_demo, tmp_path, f"http://127.0.0.1:{stalled.port}/flux-demo.git")
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            workspace.reader()
            outcome["first"] = "read"
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcome["first"] = error

    stuck = threading.Thread(target=first, daemon=True)
    stuck.start()
    assert stalled.connected.wait(30), "the first read never reached the origin"
    # while that fetch hangs on the origin, another request reads the mirror as it is
    second: dict[str, object] = {}
    other = threading.Thread(target=lambda: second.setdefault("head", workspace.reader().head), daemon=True)
    other.start()
    other.join(30)
    assert second.get("head") == git(flux_demo, "rev-parse", "main")
    assert stuck.is_alive(), "the second read waited for the stalled fetch"
    # the stalled fetch is cut off by the hard limit and becomes an outage, not a hang
    stuck.join(60)
    assert not stuck.is_alive()
    assert isinstance(outcome["first"], OriginUnavailable), outcome
    assert "timed out" in str(outcome["first"])


def test_a_push_to_a_stalled_origin_is_an_outage(flux_demo: Path, tmp_path: Path, stalled: SilentListener,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace_module, "GIT_NETWORK_TIMEOUT_SECONDS", 3.0)
    workspace = mirrored(flux_demo, tmp_path, f"http://127.0.0.1:{stalled.port}/flux-demo.git")
    with pytest.raises(OriginUnavailable, match="timed out"):
        workspace.branch_head("main")


def test_git_network_calls_carry_low_speed_limits(flux_demo: Path, tmp_path: Path) -> None:
    env = Workspace(str(flux_demo), tmp_path / "cache")._git_env()
    assert int(env["GIT_HTTP_LOW_SPEED_LIMIT"]) > 0 and int(env["GIT_HTTP_LOW_SPEED_TIME"]) > 0
    assert "ConnectTimeout=" in env.get("GIT_SSH_COMMAND", "ConnectTimeout=")


def test_the_mirror_lock_is_reentrant_in_a_thread(flux_demo: Path, tmp_path: Path) -> None:
    # refresh() takes the lock briefly itself; a caller already holding it must not deadlock on flock
    workspace = Workspace(str(flux_demo), tmp_path / "cache")
    done = threading.Event()

    def nested() -> None:
        with workspace.locked():
            workspace.refresh()
            with workspace.locked():
                done.set()

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(60)
    assert done.is_set()
