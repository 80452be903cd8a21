"""`fluxbot serve` as an operator starts it: signed requests get 200, wrong signatures 401."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SlackHarness, branches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_signed_requests_and_refuses_forged_ones(example_repo: Path, slack_standin, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET, "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
           "FLUXBOT_SLACK_API_URL": slack_standin.api_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--repo", str(example_repo), "--state", str(tmp_path / "state")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in iter(process.stdout.readline, ""):
            if "serving Slack on" in line or "fluxbot:" in line:
                break
        assert "serving Slack on" in line, line
        harness = SlackHarness(None, port, slack_standin)
        assert harness.command("help")[0] == 200
        assert harness.command("help", secret="not-the-secret")[0] == 401
        slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])
        # without a config file, writes are denied until permissions are configured
        harness.command("promote v0.4.0 to prod-eu")
        refusal = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "may not run" in p["text"]])[0]
        assert "no permission rule allows it" in refusal["text"]
        assert branches(example_repo) == []
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/healthz") == (200, "ok\n")
        status, ready = get(base + "/readyz")
        assert status == 200 and json.loads(ready) == {"store": "ok", "forge": "ok", "slack": "ok"}
        _, metrics = get(base + "/metrics")
        assert 'fluxbot_commands_total{outcome="ok",verb="help"} 1.0' in metrics
        assert 'fluxbot_commands_total{outcome="error",verb="promote"} 1.0' in metrics
        assert "fluxbot_slack_ack_seconds_count 3.0" in metrics
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert SLACK_BOT_TOKEN not in output and "Traceback" not in output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [e for e in events if e.get("message") == "request"]
    assert {(e["user_id"], e["action"], e["outcome"]) for e in requests} >= {("U_ALICE", "help", "ok"),
                                                                           ("U_ALICE", "promote", "error")}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_serve_says_when_slack_rejects_the_token(example_repo: Path, slack_standin, tmp_path: Path) -> None:
    env = {**os.environ, "SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-wrong-token",
           "FLUXBOT_SLACK_API_URL": slack_standin.api_url}
    run = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", "0", "--repo", str(example_repo),
                          "--state", str(tmp_path / "s")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "cannot verify SLACK_BOT_TOKEN" in run.stderr and "invalid_auth" in run.stderr
    assert "xoxb-wrong-token" not in run.stderr + run.stdout


def test_serve_says_which_settings_are_missing(example_repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    run = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--repo", str(example_repo), "--socket-mode"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN" in run.stderr
