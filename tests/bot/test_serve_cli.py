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


def serve(repo: Path, state: Path, slack_standin, port: int, *flags: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """Start `fluxbot serve` as an operator would; the process and the first line it printed that is
    not a JSON log record (it says where it serves, or why it cannot)."""
    environment = {**os.environ, "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET, "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
                   "FLUXBOT_SLACK_API_URL": slack_standin.api_url, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", *flags, "--host", "127.0.0.1", "--port", str(port),
         "--repo", str(repo), "--state", str(state)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    for line in iter(process.stdout.readline, ""):
        if not line.startswith("{"):
            return process, line
    return process, ""


def test_serve_answers_signed_requests_and_refuses_forged_ones(example_repo: Path, slack_standin, tmp_path: Path) -> None:
    port = free_port()
    process, line = serve(example_repo, tmp_path / "state", slack_standin, port)
    try:
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


def test_serve_in_socket_mode_answers_over_the_socket(example_repo: Path, slack_standin, tmp_path: Path) -> None:
    """Slack's requests arrive over a WebSocket; acked there, answered through the Web API; the HTTP
    port keeps probes (and webhooks) but no /slack/events; a journalled request is answered on start."""
    from urllib.parse import parse_qsl

    from bot.store import Store
    from tests.conftest import shared_file
    from tests.standins.socket_mode import SocketModeStandIn

    socket = SocketModeStandIn()
    slack_standin.socket_url = socket.url
    state = tmp_path / "state"
    # a request an earlier process took but never answered (it was stopped mid-way)
    Store(state / "fluxbot.db").begin_request("U_EARLIER", "versions", "C_OPS", "1700000000.000001", [], False, 0.0)
    port = free_port()
    process, line = serve(example_repo, state, slack_standin, port, "--socket-mode", SLACK_APP_TOKEN=slack_standin.app_token)
    try:
        assert "connected to Slack in Socket Mode" in line, line
        socket.wait_connected()
        assert slack_standin.of("apps.connections.open")[0].headers["authorization"] == f"Bearer {slack_standin.app_token}"
        recovered = slack_standin.wait_for(lambda: [p for p in slack_standin.posts()
                                                    if p.get("thread_ts") == "1700000000.000001"])
        assert "releases" in recovered[0]["text"]

        command = dict(parse_qsl(shared_file("fixtures/payloads/slack/slash_command.urlencoded.txt").read_text()))
        command.update(command="/flux", text="help", user_id="U_ALICE", channel_id="C_OPS")
        envelope = socket.send("slash_commands", command)
        slack_standin.wait_for(lambda: socket.acked(envelope))
        answer = slack_standin.wait_for(lambda: [p for p in slack_standin.posts()
                                                 if p.get("thread_ts") and "promote" in p["text"] and "rollback" in p["text"]])
        assert answer[0]["channel"] == "C_OPS"

        mention = json.loads(shared_file("fixtures/payloads/slack/app_mention.event_callback.json").read_text())
        mention["event"].update(text="<@W111> status demo", user="U_ALICE", channel="C_OPS")
        envelope = socket.send("events_api", mention)
        slack_standin.wait_for(lambda: socket.acked(envelope))
        slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "demo" in p["text"] and "v0.4.0" in p["text"]])

        base = f"http://127.0.0.1:{port}"
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/slack/events")[0] == 404
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
        socket.stop()
    assert SLACK_BOT_TOKEN not in output and slack_standin.app_token not in output and "Traceback" not in output
