"""`fluxbot serve` as an operator starts it: signed requests get 200, wrong signatures 401."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import urllib.error
import urllib.request
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import pytest

from tests.conftest import SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SlackHarness, branches, pid_of, skip_or_fail


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(repo: Path, state: Path, slack_standin, port: int, *flags: str, prefix: Sequence[str] = (),
          **env: str) -> tuple[subprocess.Popen[str], str]:
    """Start `fluxbot serve` as an operator would (after `prefix`, e.g. unshare); the process and the
    first line it printed that is not a JSON log record (it says where it serves, or why it cannot)."""
    environment = {**os.environ, "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET, "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
                   "FLUXBOT_SLACK_API_URL": slack_standin.api_url, **env}
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "bot.cli", "serve", *flags, "--host", "127.0.0.1", "--port", str(port),
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
        status, ready = readyz(base)
        assert status == 200 and ready == {"store": "ok", "forge": "ok", "slack": "ok"}
        _, metrics = get(base + "/metrics")
        assert 'fluxbot_commands_total{outcome="ok",verb="help"} 1.0' in metrics
        assert 'fluxbot_commands_total{outcome="denied",verb="promote"} 1.0' in metrics  # denied is not failed
        assert 'fluxbot_command_duration_seconds_count{outcome="ok",verb="help"} 1.0' in metrics
        assert "process_resident_memory_bytes" in metrics and 'fluxbot_build_info{python=' in metrics
        assert "fluxbot_gates_pending 0.0" in metrics and "fluxbot_journal_requests" in metrics
        assert "fluxbot_slack_ack_seconds_count 3.0" in metrics
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert SLACK_BOT_TOKEN not in output and "Traceback" not in output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # RFC 3339 with a zone, and no warning at every start that an operator cannot act on
    assert events and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", e["time"]) for e in events)
    assert not [e for e in events if "will be unused" in e["message"]]
    requests = [e for e in events if e.get("message") == "request"]
    assert {(e["user_id"], e["action"], e["outcome"]) for e in requests} >= {("U_ALICE", "help", "ok"),
                                                                           ("U_ALICE", "promote", "denied")}


def readyz(base: str, until: Callable[[dict[str, str]], bool] = lambda r: True) -> tuple[int, dict[str, str]]:
    """/readyz once its background dependency checks have answered (and `until` holds)."""
    deadline = time.monotonic() + 30
    while True:
        status, body = get(base + "/readyz")
        results = json.loads(body)
        settled = not any(v.startswith("unknown") for v in results.values()) and until(results)
        if settled or time.monotonic() > deadline:
            return status, results
        time.sleep(0.2)


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


def _pid_namespace() -> list[str]:
    """The command prefix that runs a program as PID 1 of a new PID namespace, as in a container."""
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_or_fail("unshare (util-linux) is not installed here: cannot run fluxbot as PID 1")
    prefix = [unshare, "--user", "--map-root-user", "--pid", "--fork", "--"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or probe.stdout.strip() != "1":
        skip_or_fail(f"this machine does not allow a new PID namespace here: {probe.stderr.strip()[:200]}")
    return prefix


def _fluxbot_pid(process: subprocess.Popen[str], in_namespace: bool) -> int:
    """fluxbot's PID as seen from here: unshare's forked child when it runs as PID 1 in a namespace."""
    if not in_namespace:
        return process.pid
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("as_pid_1", [False, True], ids=["child-process", "pid-1"])
def test_sigterm_stops_listening_drains_acked_work_and_exits(example_repo: Path, slack_standin, tmp_path: Path,
                                                             as_pid_1: bool) -> None:
    """SIGTERM (what Kubernetes sends): no new connections, the acked request is still answered, rc 0.
    As PID 1 an unhandled SIGTERM is ignored by the kernel, so this is the container's case."""
    prefix = _pid_namespace() if as_pid_1 else []
    port = free_port()
    process, line = serve(example_repo, tmp_path / "state", slack_standin, port, prefix=prefix)
    fluxbot = _fluxbot_pid(process, as_pid_1)
    slack_standin.hold = threading.Event()
    try:
        assert "serving Slack on" in line, line
        assert SlackHarness(None, port, slack_standin).command("help")[0] == 200  # acked
        slack_standin.wait_for(lambda: slack_standin.held)  # its answer is on the way: work in flight
        os.kill(fluxbot, signal.SIGTERM)
        slack_standin.wait_for(lambda: not _listening(port))
        assert process.poll() is None  # still finishing the acked request
        slack_standin.hold.set()
        output = process.communicate(timeout=60)[0]
    finally:
        slack_standin.hold.set()
        if process.poll() is None:
            for pid in {fluxbot, process.pid}:  # killing unshare alone would leave its PID 1 running
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.communicate(timeout=30)
    assert process.returncode == 0, output
    answers = [p for p in slack_standin.posts() if p.get("thread_ts") and "promote" in p["text"]]
    assert len(answers) == 1  # the help answer was delivered before the process ended
    messages = [json.loads(line)["message"] for line in output.splitlines() if line.startswith("{")]
    assert "received SIGTERM" in messages and messages[-1] == "stopped"


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))


def test_an_oversized_unsigned_body_gets_413_before_anything_reads_it(example_repo: Path, slack_standin,
                                                                       tmp_path: Path) -> None:
    """Issue #20: a 100 MB unsigned POST took 9.6 s and 600 MB before its 401, and was logged whole."""
    port = free_port()
    process, line = serve(example_repo, tmp_path / "state", slack_standin, port)
    marker = "response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FLEAKED&token=LEAKED-VERIFICATION"
    try:
        assert "serving Slack on" in line, line
        before = _peak_rss_kib(process.pid)
        for path in ("/slack/events", "/github/webhook", "/nowhere"):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
                client.sendall(f"POST {path} HTTP/1.1\r\nHost: fluxbot\r\nContent-Length: {100 * 1024 * 1024}\r\n"
                               "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
                try:
                    client.sendall((marker + "&" + "a" * (2 * 1024 * 1024)).encode())
                except OSError:
                    pass  # the server answered and closed without reading the rest
                reply = client.recv(4096)
            assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        harness = SlackHarness(None, port, slack_standin)
        assert harness.post(marker + "&command=%2Fflux&text=help", "application/x-www-form-urlencoded",
                            secret="not-the-secret")[0] == 401
        grown = _peak_rss_kib(process.pid) - before
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert grown < 32 * 1024, f"peak memory grew by {grown} KiB"
    assert "LEAKED" not in output and "aaaaaaaa" not in output
    assert "request body of" in output  # the bad signature is logged, its body is not


def test_a_github_outage_shows_in_readyz_and_metrics_but_the_pod_stays_ready(
        github_standin, slack_standin, tmp_path: Path) -> None:
    """Ready means "can take requests" (the journal rides out the outage); NotReady would cut Slack off."""
    from tests.conftest import GITHUB_TOKEN

    config = tmp_path / "fluxbot.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nforge:\n  type: github\n"
                      f"  repository: {github_standin.full_name}\n  base_url: {github_standin.base_url}\n"
                      f"  git_url: {github_standin.bare_repo}\n  seconds_between_writes: 0\n")
    github_standin.outage = 503
    port = free_port()
    environment = {**os.environ, "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET, "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
                   "FLUXBOT_SLACK_API_URL": slack_standin.api_url, "GITHUB_TOKEN": GITHUB_TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--config", str(config)], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = next(line for line in iter(process.stdout.readline, "") if not line.startswith("{"))
        assert "serving Slack on" in line, line
        status, ready = readyz(f"http://127.0.0.1:{port}")
        assert status == 200, ready
        assert ready["store"] == "ok" and ready["slack"] == "ok"
        assert ready["forge"].startswith("failed: ForgeUnavailable"), ready
        _, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert 'fluxbot_dependency_up{dependency="forge"} 0.0' in metrics
        assert 'fluxbot_dependency_up{dependency="slack"} 1.0' in metrics
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert GITHUB_TOKEN not in output


def test_webhook_deliveries_are_counted_by_event_and_result(tmp_path: Path) -> None:
    import hashlib
    import hmac
    import io

    from bot.metrics import REGISTRY
    from bot.store import Store
    from bot.github.webhooks import GitHubWebhook

    def deliver(body: bytes, event: str, delivery: str, secret: str = "webhook-secret-0123") -> str:
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                   "HTTP_X_HUB_SIGNATURE_256": signature, "HTTP_X_GITHUB_EVENT": event, "HTTP_X_GITHUB_DELIVERY": delivery}
        status: list[str] = []
        hook(environ, lambda s, headers: status.append(s))
        return status[0]

    def count(event: str, result: str) -> float:
        return REGISTRY.get_sample_value("fluxbot_webhook_deliveries_total", {"event": event, "result": result}) or 0.0

    hook = GitHubWebhook("webhook-secret-0123", Store(tmp_path / "db"), lambda event, payload: None)
    before = {k: count(*k) for k in (("status", "accepted"), ("status", "duplicate"), ("other", "bad_signature"))}
    assert deliver(b"{}", "status", "d1").startswith("202")
    hook.drain()  # a delivery counts as seen once handled (#14)
    assert deliver(b"{}", "status", "d1").startswith("200")  # redelivered
    assert deliver(b"{}", "made-up-event", "d2", secret="wrong").startswith("401")
    hook.drain()
    assert {k: count(*k) - v for k, v in before.items()} == {("status", "accepted"): 1, ("status", "duplicate"): 1,
                                                            ("other", "bad_signature"): 1}


def test_the_server_answers_when_the_process_holds_more_than_1024_descriptors() -> None:
    """select() refuses descriptors numbered 1024 and up; a busy process (many clusters, git readers,
    connections) gets there, and waitress's default select() loop then stops answering anything."""
    import resource

    from bot.server import build_server
    from tests.conftest import Served

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200 and (hard == resource.RLIM_INFINITY or hard >= 1200):
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))  # as an operator's ulimit -n would
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        skip_or_fail(f"the open-files limit here is {soft} (hard {hard}); this needs room for 1,100 descriptors")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the server's own sockets come after these
    try:
        served = Served(build_server(None, "127.0.0.1", 0))
        try:
            assert served.server.socket.fileno() >= 1024
            with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz", timeout=5) as reply:
                assert reply.status == 200
        finally:
            served.stop()
    finally:
        for fd in held:
            os.close(fd)


def test_serve_with_workers_only_journals_and_acks_and_the_workers_answer(example_repo: Path, slack_standin,
                                                                          tmp_path: Path) -> None:
    """#19: `--workers 2`: the serving process verifies, deduplicates, journals and acks; two worker
    processes claim the requests and answer them, so the work never shares the acks' interpreter."""
    from bot.store import Store

    config = tmp_path / "fluxbot.yaml"
    config.write_text("permissions:\n  rules:\n    - actions: ['*']\n      clusters: ['*']\n      users: [U_ALICE]\n")
    # a request a stopped process took but never answered, still inside its lease: due for the workers at start
    Store(tmp_path / "state" / "fluxbot.db").begin_request("U_EARLIER", "versions", "C_OPS", "1700000000.000001", [],
                                                           False, time.time())
    port = free_port()
    process, line = serve(example_repo, tmp_path / "state", slack_standin, port, "--workers", "2", "--config",
                          str(config))
    try:
        assert "serving Slack on" in line, line
        harness = SlackHarness(None, port, slack_standin)
        assert harness.command("rollback demo")[0] == 200
        assert harness.command("versions", channel="C_OTHER")[0] == 200
        slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]], timeout=60)
        slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["channel"] == "C_OTHER"
                                        and p.get("thread_ts") and "v0.4.0" in p["text"]], timeout=60)
        slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts") == "1700000000.000001"])
        store = Store(tmp_path / "state" / "fluxbot.db")
        rows = store.query("SELECT text, state, owner FROM requests ORDER BY id")
        store.close()
        # the earlier request first; the two new ones run side by side, so their "asked" posts (and rows) may swap
        assert (rows[0]["text"], rows[0]["state"]) == ("versions", "answered")
        assert sorted((r["text"], r["state"]) for r in rows[1:]) == [("rollback demo from v0.4.0 to v0.3.0", "answered"),
                                                                     ("versions", "answered")]
        # a productive promotion asks first; the confirming click is journalled and run by a worker too
        assert harness.command("promote v0.4.0 to prod-eu", channel="C_PROD")[0] == 200
        ask = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")],
                                     timeout=60)[0]
        actions = next(b for b in ask["blocks"] if b["type"] == "actions")
        confirm = next(e for e in actions["elements"] if e["action_id"] == "fluxbot_confirm")
        assert harness.click("fluxbot_confirm", confirm["value"], user="U_ALICE", channel="C_PROD",
                             thread_ts=ask["thread_ts"])[0] == 200
        slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #2" in p["text"]
                                        and p.get("thread_ts") == ask["thread_ts"]], timeout=60)
        store = Store(tmp_path / "state" / "fluxbot.db")
        rows = store.query("SELECT text, state, owner, confirmed FROM requests ORDER BY id")
        store.close()
        assert [(r["text"], r["state"], r["confirmed"]) for r in rows[-2:]] == [
            ("promote v0.4.0 to prod-eu", "answered", 0), ("promote v0.4.0 to prod-eu", "answered", 1)]
        owners = {pid_of(r["owner"]) for r in rows}
        assert process.pid not in owners and len(owners) >= 1  # run by worker processes, not by serve
        assert branches(example_repo) == ["fluxbot/promote-prod-eu-v0.4.0", "fluxbot/rollback-demo-v0.3.0"]
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert "Traceback" not in output


def test_workers_stop_when_their_serving_process_is_killed(example_repo: Path, slack_standin, tmp_path: Path) -> None:
    """A SIGKILLed `serve` cannot stop its workers; they notice it is gone and exit, instead of
    claiming requests for a front nobody reaches any more."""
    import signal

    def children(pid: int) -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        return found

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    process, line = serve(example_repo, tmp_path / "state", slack_standin, free_port(), "--workers", "2")
    workers = children(process.pid)
    try:
        assert "serving Slack on" in line and len(workers) == 2, (line, workers)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if alive(w)]
    finally:
        for worker in workers:
            if alive(worker):
                os.kill(worker, signal.SIGKILL)
