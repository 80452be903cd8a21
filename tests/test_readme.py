"""The README's promises: its two commands work, CI runs its test command, its reference is current."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bot.docs import command_reference
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def block(name: str) -> str:
    """The command inside the README's `<!-- name:start -->` fenced block."""
    match = re.search(rf"<!-- {name}:start -->\n```sh\n(.+?)\n```\n<!-- {name}:end -->", README, re.S)
    assert match, f"README has no {name} block"
    return match.group(1)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert block("test") in ci


def test_command_reference_matches_the_registry() -> None:
    match = re.search(r"<!-- commands:start -->\n(.+?)<!-- commands:end -->", README, re.S)
    assert match and match.group(1) == command_reference(), "run `python -m bot.docs` and paste it into README.md"


def test_the_run_command_starts_a_shell_on_the_example_repo(tmp_path: Path) -> None:
    run = block("run")
    assert run.endswith(".venv/bin/fluxbot shell --example")
    # The install part is what .ci/run already did; run the shell part with this interpreter.
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "shell", "--example", "--user", "newcomer"],
        input="status\npromote v0.4.0 to prod-eu\nprs\n",
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3 clusters · latest release v0.4.0" in result.stdout
    assert "Opened: PR #1 Promote prod-eu to v0.4.0" in result.stdout
    assert (tmp_path / "fluxbot" / "example-repo" / "clusters" / "prod-eu").is_dir()
