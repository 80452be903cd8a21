"""Several `fluxbot serve` replicas on one PostgreSQL database (#19): each request answered once,
one PR per change, Slack's retries deduplicated across replicas, and a leader that hands over."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.bot.test_serve_cli import free_port, serve
from tests.conftest import SlackHarness, branches, pid_of, together


def _config(tmp_path: Path, store_url: str) -> Path:
    config = tmp_path / "fluxbot.yaml"
    config.write_text(f"store:\n  url: '{store_url}'\npermissions:\n  rules:\n"
                      "    - actions: ['*']\n      clusters: ['*']\n      users: [U_ALICE]\n")
    return config


class Replicas:
    """`count` fluxbot processes, each with its own state dir (git mirror) and port, one database."""

    def __init__(self, count: int, repo: Path, tmp_path: Path, slack_standin, store_url: str) -> None:
        self.config = _config(tmp_path, store_url)
        self.repo, self.tmp_path, self.slack_standin = repo, tmp_path, slack_standin
        self.processes: list[subprocess.Popen[str]] = []
        self.harnesses: list[SlackHarness] = []
        self.output: list[str] = []
        for _ in range(count):
            self.start()

    def start(self, **env: str) -> SlackHarness:
        """One more replica (`env`: its own environment variables, a failpoint say)."""
        port = free_port()
        process, line = serve(self.repo, self.tmp_path / f"state-{len(self.processes)}", self.slack_standin, port,
                              "--config", str(self.config), **env)
        self.processes.append(process)
        assert "serving Slack on" in line, line
        self.harnesses.append(SlackHarness(None, port, self.slack_standin))
        return self.harnesses[-1]

    def at_once(self, calls) -> list:
        """Run the (harness index, callable) pairs released together; their results."""
        return together(len(calls), lambda i: calls[i][1](self.harnesses[calls[i][0]]))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                self.output.append(process.communicate(timeout=30)[0])
            except subprocess.TimeoutExpired:
                process.kill()
                self.output.append(process.communicate()[0])


# replicas share PostgreSQL; a SQLite file is one process's (the chart refuses more replicas on it)
pytestmark = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


@pytest.fixture
def replicas(example_repo: Path, tmp_path: Path, slack_standin, store_url: str):
    made: list[Replicas] = []

    def start(count: int) -> Replicas:
        made.append(Replicas(count, example_repo, tmp_path, slack_standin, store_url))
        return made[-1]

    yield start
    for each in made:
        each.stop()
    assert all("Traceback" not in out for each in made for out in each.output), made[0].output


def test_three_replicas_answer_each_request_once_and_a_retried_event_once(replicas, slack_standin,
                                                                         example_repo: Path) -> None:
    fleet = replicas(3)
    # Slack's retry of one event reaches other replicas (X-Slack-Retry-Num), all at the same moment
    statuses = fleet.at_once([
        (0, lambda h: h.mention("rollback demo", event_id="EvOnce", ts="1700000000.000100")[0]),
        (1, lambda h: h.mention("rollback demo", event_id="EvOnce", ts="1700000000.000100",
                                headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})[0]),
        (2, lambda h: h.mention("rollback demo", event_id="EvOnce", ts="1700000000.000100",
                                headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})[0]),
    ])
    assert statuses == [200, 200, 200]
    opened = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]],
                                    timeout=60)
    # six different requests spread over the replicas, two at a time on each (a slash command is one
    # request per trigger_id: the same one twice is a duplicate, whichever replica it reaches)
    fleet.at_once([(i % 3, lambda h, i=i: h.command("versions", channel=f"C_{i}", trigger_id=f"trigger.v{i}")[0])
                   for i in range(6)])
    answers = slack_standin.wait_for(
        lambda: (lambda found: found if len(found) >= 6 else None)(
            [p for p in slack_standin.posts() if p["channel"] in {f"C_{i}" for i in range(6)} and p.get("thread_ts")
             and "v0.4.0" in p["text"]]), timeout=60)
    time.sleep(1.0)  # a second answer, if one were coming, would be here by now
    assert len([p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]]) == len(opened) == 1
    assert sorted(p["channel"] for p in answers) == [f"C_{i}" for i in range(6)]
    assert branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]


def test_a_killed_leader_hands_over_and_the_next_one_leads(replicas, store_url: str) -> None:
    from bot.store import Store

    fleet = replicas(2)
    store = Store(store_url)
    try:
        deadline = time.monotonic() + 30
        while (store.leader("leader") is None or not store.leader("leader")["holder"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        first = store.leader("leader")
        assert first is not None and first["holder"]
        pid = pid_of(first["holder"])
        leader = next(p for p in fleet.processes if p.pid == pid)
        leader.send_signal(signal.SIGTERM)  # a clean stop resigns: the other takes over at its next renewal
        leader.wait(30)
        while store.leader("leader")["holder"] == first["holder"] and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        second = store.leader("leader")
        assert second["holder"] != first["holder"] and second["token"] > first["token"]
        assert pid_of(second["holder"]) in {p.pid for p in fleet.processes if p.poll() is None}
    finally:
        store.close()


def test_a_leader_sigkilled_mid_follow_is_replaced_and_the_thread_gets_one_verdict(
        example_repo: Path, tmp_path: Path, slack_standin, kube, store_url: str) -> None:
    """#19, with processes: replica A leads and follows a merged rollback while Flux is slow; A is
    SIGKILLed (no resignation); B's lease takes over, resumes the follow, and the thread gets one verdict."""
    from bot.kube import flux
    from bot.store import Store
    from tests.bot.test_reconcile import boot
    from tests.conftest import git

    boot(kube, example_repo)
    kube.flux.hold(flux.GITREPOSITORIES, "infrastructure")  # Flux is slow: the follow is open when A dies
    fleet = Replicas(0, example_repo, tmp_path, slack_standin, store_url)  # started one by one below
    config = fleet.config
    config.write_text(config.read_text() + f"clusters:\n  demo:\n    kubeconfig: {kube.kubeconfig(tmp_path / 'kc')}\n"
                                           "    context: standin\n")
    store = Store(store_url)

    def leader() -> int:
        row = store.leader("leader")
        return pid_of(row["holder"]) if row and row["holder"] else 0

    def texts() -> list[str]:
        return [p["text"] for p in slack_standin.posts()]

    try:
        a = fleet.start()
        slack_standin.wait_for(lambda: leader() == fleet.processes[0].pid, timeout=30)
        fleet.start()
        a.command("rollback demo")
        slack_standin.wait_for(lambda: [t for t in texts() if "Opened: PR #1" in t], timeout=60)
        a.command("pr merge 1")
        slack_standin.wait_for(lambda: [t for t in texts() if "Merged PR #1" in t], timeout=60)
        kube.flux.push_main(git(example_repo, "rev-parse", "main"), "v0.3.0")  # the cluster's remote has it
        slack_standin.wait_for(lambda: (store.open_follows() or [{}])[0].get("requested") == 2, timeout=60)
        fleet.processes[0].send_signal(signal.SIGKILL)
        fleet.processes[0].wait(10)
        slack_standin.wait_for(lambda: leader() == fleet.processes[1].pid, timeout=60)  # A's lease ran out
        kube.flux.hold(flux.GITREPOSITORIES, "infrastructure", held=False)
        ts = store.thread_for("local", 1)["thread_ts"]
        verdict = lambda: [p for p in slack_standin.posts()  # noqa: E731
                           if p.get("thread_ts") == ts and "demo runs v0.3.0" in p["text"]]
        slack_standin.wait_for(verdict, timeout=60)
        time.sleep(1.0)  # a second verdict, if one were coming, would be here by now
        assert len(verdict()) == 1
        assert store.open_follows() == []
    finally:
        fleet.stop()
        store.close()


@pytest.mark.parametrize("point", ["after-push", "after-pr", "before-finish"])
def test_a_replica_sigkilled_mid_rollback_is_finished_by_another_once(
        example_repo: Path, tmp_path: Path, slack_standin, store_url: str, point: str) -> None:
    """#19: two `serve` replicas (lease 2 s); the one a rollback reaches SIGKILLs itself at `point`;
    the other takes the request over when the lease runs out: one PR, no orphan branch, one answer."""
    from bot.store import Store

    fleet = Replicas(0, example_repo, tmp_path, slack_standin, store_url)
    fleet.config.write_text(fleet.config.read_text().replace("store:\n", "store:\n  lease_seconds: 2\n"))
    store = Store(store_url)
    try:
        dying = fleet.start(FLUXBOT_FAILPOINT=point)
        fleet.start()
        assert dying.mention("rollback demo", event_id="EvKill", ts="1700000000.000900")[0] == 200
        fleet.processes[0].wait(60)
        assert fleet.processes[0].returncode == -signal.SIGKILL
        answers = lambda: [p for p in slack_standin.posts()  # noqa: E731
                           if p.get("thread_ts") == "1700000000.000900" and "Opened: PR #1" in p["text"]]
        slack_standin.wait_for(answers, timeout=60)
        time.sleep(1.0)  # a second answer, if one were coming, would be here by now
        assert [p["text"].split("\n")[0] for p in slack_standin.posts()] == [
            "✓ Opened: PR #1 Roll back demo to v0.3.0"]  # the only post: not "already open" as well
        assert branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]
        assert [r["n"] for r in store.query("SELECT count(*) AS n FROM local_prs")] == [1]
        # the PR is linked to the thread: its merge, reviews and reconcile verdict are posted there
        assert store.thread_for("local", 1)["thread_ts"] == "1700000000.000900"
        rows = store.query("SELECT state, owner FROM requests")
        assert [r["state"] for r in rows] == ["answered"]
        # before-finish: the answer was journalled and posted before the kill; nothing is left to run
        finisher = fleet.processes[0 if point == "before-finish" else 1].pid
        assert rows[0]["owner"].endswith(f"/{finisher}")
    finally:
        fleet.stop()
        store.close()
