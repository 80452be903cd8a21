"""The change gate end to end: Slack command -> PR -> gate pending -> approval -> merge -> thread."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from bot.cli import build_bot
from bot.config import ForgeSettings, GateSettings, Settings, SlackSettings
from bot.gate import ChangeGate
from bot.server import build_server
from bot.slack import SlackTransport
from bot.webhooks import GitHubWebhook
from commands.gate import GatePolicy
from commands.permissions import Policy, Rule
from tests.conftest import GITHUB_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SlackHarness, git, shared_file

SECRET = "webhook-secret-0123"
POLICY = Policy(rules=(Rule(actions=("*",), users=("U_ALICE",)),), read_channels=("*",))


class GateEnv:
    """GitHub and Slack stand-ins, and fluxbot's HTTP app with the gate, restartable on one state dir."""

    def __init__(self, github, slack, state: Path, monkeypatch, policy: GatePolicy) -> None:
        self.github, self.slack, self.state, self.policy = github, slack, state, policy
        self.now = [1_000_000.0]
        monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
        self.payloads = {name: json.loads(shared_file(f"fixtures/payloads/github/{name}.json").read_text())
                         for name in ("pull_request.opened", "pull_request.synchronize", "pull_request.closed", "ping",
                                      "pull_request_review.submitted", "check_run.completed")}
        self.server = None
        self.start()

    def start(self) -> None:
        """Start (or restart) fluxbot: new objects, same SQLite state."""
        if self.server is not None:
            self.server.close()
        settings = Settings(state_dir=self.state, policy=POLICY, forge=ForgeSettings(
            type="github", repository=self.github.full_name, base_url=self.github.base_url,
            git_url=str(self.github.bare_repo), seconds_between_writes=0))
        self.bot = build_bot(settings)
        slack = SlackSettings(bot_token=SLACK_BOT_TOKEN, signing_secret=SLACK_SIGNING_SECRET, api_url=self.slack.api_url)
        self.transport = SlackTransport(self.bot, self.bot.store, slack, clock=lambda: self.now[0])
        self.gate = ChangeGate(self.bot, self.bot.store, self.transport, GateSettings(
            policy=self.policy, change_channel="C_CHANGES", approvers_group="S_CAB"), clock=lambda: self.now[0])
        self.transport.gate = self.gate
        self.webhook = GitHubWebhook(SECRET, self.bot.store, self.gate.on_event)
        self.server = build_server(self.transport.app, "127.0.0.1", 0, webhook=self.webhook)
        threading.Thread(target=self.server.run, daemon=True).start()
        self.harness = SlackHarness(self.transport, self.server.effective_port, self.slack)
        self.hook_url = f"http://127.0.0.1:{self.server.effective_port}/github/webhook"

    def deliver(self, event: str, payload: dict, delivery: str = "", secret: str = SECRET) -> int:
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(self.hook_url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-Hub-Signature-256": signature})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status = reply.status
        except urllib.error.HTTPError as error:
            status = error.code
        self.webhook.drain()
        return status

    def pr_event(self, name: str, number: int, **changes) -> dict:
        payload = copy.deepcopy(self.payloads[name])
        pull = self.github.pulls[number]
        payload["number"] = number
        payload["pull_request"].update(number=number, merged=False)
        payload["pull_request"]["head"].update(sha=pull["head"]["sha"], ref=pull["head"]["ref"])
        payload["pull_request"].update(changes)
        return payload

    def promote(self, text: str) -> int:
        """Through Slack as U_ALICE, confirming when asked; the number of the PR opened."""
        before = len(self.github.pulls)
        self.harness.command(text)
        ask = self.slack.wait_for(lambda: [p for p in self.slack.posts()
                                           if p["text"].startswith("! Confirm") or "Opened: PR" in p["text"]][before:])[0]
        if ask["text"].startswith("! Confirm"):
            value = next(e for b in ask["blocks"] if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == "fluxbot_confirm")["value"]
            self.harness.click("fluxbot_confirm", value, "U_ALICE")
        self.slack.wait_for(lambda: len(self.github.pulls) > before)
        self.slack.wait_for(lambda: self.bot.store.thread_for("github", len(self.github.pulls)))
        return len(self.github.pulls)

    def thread(self, number: int) -> list[str]:
        ts = self.bot.store.thread_for("github", number)["thread_ts"]
        return [p["text"] for p in self.slack.posts() if p.get("thread_ts") == ts]

    def request_buttons(self) -> dict[str, str]:
        request = [p for p in self.slack.posts() if p["channel"] == "C_CHANGES" and p["text"].startswith("! Change request")][-1]
        return {e["action_id"]: e["value"] for b in request["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"].startswith("fluxbot_gate_")}

    def click(self, action: str, value: str, user: str) -> None:
        count = len(self.slack.calls)
        self.harness.click(action, value, user, channel="C_CHANGES")
        self.slack.wait_for(lambda: any(c.method in ("chat.postEphemeral", "chat.update") for c in self.slack.calls[count:]))


@pytest.fixture
def env(github_standin, slack_standin, tmp_path, monkeypatch):
    slack_standin.usergroups["S_CAB"] = ["U_CAB", "U_ALICE"]
    environment = GateEnv(github_standin, slack_standin, tmp_path / "state", monkeypatch, GatePolicy())
    yield environment
    environment.server.close()


def test_signatures_and_ping(env) -> None:
    assert env.deliver("ping", env.payloads["ping"]) == 200
    assert env.deliver("ping", env.payloads["ping"], secret="wrong") == 401
    number = env.promote("promote v0.4.0 to demo")
    assert env.deliver("pull_request", env.pr_event("pull_request.opened", number), secret="wrong") == 401
    assert env.github.gate_states(env.github.pulls[number]["head"]["sha"]) == []  # nothing ran


def test_promotion_is_gated_until_an_allowed_approver_approves(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    assert env.deliver("pull_request", env.pr_event("pull_request.opened", number)) == 202
    assert env.github.gate_states(head) == ["pending"]
    assert any("Change gate: pending, awaiting approval in <#C_CHANGES>" in t for t in env.thread(number))
    buttons = env.request_buttons()
    assert buttons["fluxbot_gate_approve"] == f"{number}:{head}"

    env.click("fluxbot_gate_approve", buttons["fluxbot_gate_approve"], "U_ALICE")  # the requester
    assert "four eyes" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    env.click("fluxbot_gate_approve", buttons["fluxbot_gate_approve"], "U_EVE")  # not an approver
    assert "approvers group" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    assert env.github.gate_states(head) == ["pending"]

    env.click("fluxbot_gate_approve", buttons["fluxbot_gate_approve"], "U_CAB")
    assert env.github.gate_states(head) == ["pending", "success"]
    status = env.github.statuses[head][-1]
    assert status["description"] == "change approved by U_CAB" and status["context"] == "fluxbot/change-gate"
    assert "Change approved by <@U_CAB>" in env.thread(number)[-1]

    merged = env.pr_event("pull_request.closed", number, merged=True, merge_commit_sha="c0ffee" + "0" * 34)
    assert env.deliver("pull_request", merged, delivery="d-merge") == 202
    assert env.deliver("pull_request", merged, delivery="d-merge") == 200  # a redelivery
    assert [t for t in env.thread(number) if "merged" in t] == [f"✓ PR #{number} merged\n  merge commit `c0ffee000000`"]


def test_new_commits_reset_the_approval(env, tmp_path) -> None:
    number = env.promote("promote v0.4.0 to demo")
    env.deliver("pull_request", env.pr_event("pull_request.opened", number))
    old = env.request_buttons()["fluxbot_gate_approve"]
    env.click("fluxbot_gate_approve", old, "U_CAB")
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", "-b", "fluxbot/promote-demo-v0.4.0", str(env.github.bare_repo), str(work))
    (work / "clusters/demo/infrastructure.yaml").write_text(
        (work / "clusters/demo/infrastructure.yaml").read_text() + "# reviewed\n")
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "more")
    git(work, "push", "-q", "origin", "HEAD")
    new_head = git(work, "rev-parse", "HEAD")
    env.github.push_commit(number, new_head)
    env.deliver("pull_request", env.pr_event("pull_request.synchronize", number))
    assert env.github.gate_states(new_head) == ["pending"]
    assert any("change approval reset" in t for t in env.thread(number))
    env.click("fluxbot_gate_approve", old, "U_CAB")  # approving the old commit does nothing
    assert "older commit" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    assert env.github.gate_states(new_head) == ["pending"]


def test_a_restart_between_pr_and_approval_loses_nothing_and_posts_once(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    env.deliver("pull_request", env.pr_event("pull_request.opened", number))
    value = env.request_buttons()["fluxbot_gate_approve"]
    posted = len(env.slack.posts())
    env.start()  # fluxbot stops and starts again on the same state
    env.gate.catch_up()
    assert len(env.slack.posts()) == posted  # the catch-up posts nothing twice
    env.click("fluxbot_gate_approve", value, "U_CAB")
    assert env.github.gate_states(head) == ["pending", "success"]
    assert len([t for t in env.thread(number) if "Change approved" in t]) == 1


def test_merges_missed_while_down_are_posted_once_after_restart(env) -> None:
    number = env.promote("rollback demo")
    env.github._merge(number)
    env.start()
    env.gate.catch_up()
    env.gate.catch_up()
    assert len([t for t in env.thread(number) if f"PR #{number} merged" in t]) == 1


def test_rollback_is_expedited_and_announced(env) -> None:
    number = env.promote("rollback demo because nginx crashloop")
    head = env.github.pulls[number]["head"]["sha"]
    env.deliver("pull_request", env.pr_event("pull_request.opened", number))
    assert env.github.gate_states(head) == ["success"]
    assert "emergency rollback" in env.github.statuses[head][-1]["description"]
    announce = [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and "Emergency change" in p["text"]]
    assert len(announce) == 1


def test_expired_requests_fail_the_gate(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    env.deliver("pull_request", env.pr_event("pull_request.opened", number))
    env.now[0] += 25 * 3600
    env.gate.sweep()
    assert env.github.gate_states(head) == ["pending", "failure"]
    assert any("expired" in t for t in env.thread(number))


def test_a_hand_made_pr_touching_a_productive_cluster_is_gated_in_the_change_channel(env, tmp_path) -> None:
    work = tmp_path / "hand"
    git(tmp_path, "clone", "-q", str(env.github.bare_repo), str(work))
    git(work, "checkout", "-q", "-b", "bump-demo-by-hand")
    path = work / "clusters/demo/apps/values/podinfo.yaml"
    path.write_text(path.read_text().replace("podinfo.production", "podinfo.prod"))
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "values")
    git(work, "push", "-q", "origin", "HEAD")
    _status, pull, _headers = env.github._create_pull({"head": "bump-demo-by-hand", "base": "main", "title": "podinfo host"})
    env.deliver("pull_request", env.pr_event("pull_request.opened", pull["number"]))
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending"]
    roots = [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and not p.get("thread_ts")]
    assert any("changes productive demo" in p["text"] for p in roots)


def test_reviews_and_failing_checks_reach_the_thread(env) -> None:
    number = env.promote("rollback demo")
    review = env.pr_event("pull_request_review.submitted", number)
    review["review"].update(state="approved", id=77)
    env.deliver("pull_request_review", review)
    check = copy.deepcopy(env.payloads["check_run.completed"])
    check["check_run"].update(conclusion="failure", name="kustomize-build", pull_requests=[{"number": number}])
    env.deliver("check_run", check)
    thread = env.thread(number)
    assert any(t.startswith("✓ Review: approved by") for t in thread)
    assert any("Check `kustomize-build` failure" in t for t in thread)


def test_webhook_provider_files_and_polls_the_change_request(github_standin, slack_standin, tmp_path, monkeypatch) -> None:
    from tests.standins.changes import ChangeSystem

    system = ChangeSystem()
    monkeypatch.setenv("CAB_TOKEN", system.token)
    environment = GateEnv(github_standin, slack_standin, tmp_path / "state", monkeypatch, GatePolicy(provider="webhook"))
    try:
        environment.gate.settings.webhook_url = system.url + "/changes"
        environment.gate.settings.webhook_token_env = "CAB_TOKEN"
        number = environment.promote("promote v0.4.0 to demo")
        head = github_standin.pulls[number]["head"]["sha"]
        environment.deliver("pull_request", environment.pr_event("pull_request.opened", number))
        assert github_standin.gate_states(head) == ["pending"]
        (request,) = system.requests
        assert (request["pr"], request["commit"], request["clusters"], request["requester"]) == (number, head, ["demo"], "U_ALICE")
        environment.gate.sweep()
        assert github_standin.gate_states(head) == ["pending"]  # still undecided
        system.decide("CHG0001", "approved", "cab-board")
        environment.gate.sweep()
        environment.gate.sweep()
        assert github_standin.gate_states(head) == ["pending", "success"]
        assert github_standin.statuses[head][-1]["description"] == "change approved by cab-board"
        assert len([t for t in environment.thread(number) if "Change approved by cab-board" in t]) == 1
    finally:
        environment.server.close()
        system.stop()
