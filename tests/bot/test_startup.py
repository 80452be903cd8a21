"""`fluxbot check` runs in CI on every push: it starts without the Kubernetes, GitHub or Slack
clients (#18; the time itself is measured in bench/run.py, not asserted here)."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("kubernetes", "github", "slack_bolt", "slack_sdk")


def _imported_by(*argv: str) -> list[str]:
    probe = ("import runpy, sys\nsys.argv = ['fluxbot', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('bot.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print('IMPORTED:', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    line = next(line for line in run.stderr.splitlines() if line.startswith("IMPORTED:"))
    return line.split()[1:]


def test_fluxbot_check_imports_no_cluster_forge_or_chat_client(tmp_path) -> None:
    assert _imported_by("check", "--help") == []
    # a real run too: an error path (not a repository) must not pull them in either
    assert _imported_by("check", "--repo", str(tmp_path), "--base", "a", "--head", "b") == []


def test_the_cli_module_itself_imports_none_of_them() -> None:
    probe = f"import sys, bot.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == []


def test_fluxbot_shell_starts_without_the_cluster_forge_or_chat_clients(example_repo, tmp_path) -> None:
    """#18 left `fluxbot shell` importing the Kubernetes client at start (about 0.3 s): it is now
    imported when a cluster is first reached."""
    probe = ("import runpy, sys, io\nsys.argv = ['fluxbot', *sys.argv[1:]]\nsys.stdin = io.StringIO('status\\n')\n"
             "try:\n    runpy.run_module('bot.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print('IMPORTED:', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", probe, "shell", "--repo", str(example_repo), "--state",
                          str(tmp_path / "state")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "prod-eu" in run.stdout, run.stdout + run.stderr  # it answered `status`
    line = next(line for line in run.stderr.splitlines() if line.startswith("IMPORTED:"))
    assert line.split()[1:] == []
