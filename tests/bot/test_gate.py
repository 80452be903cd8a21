"""The change gate end to end: Slack command -> PR -> gate pending -> approval -> merge -> thread."""
from __future__ import annotations

import copy
import gc
import hashlib
import hmac
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from bot.cli import build_bot
from bot.config import ForgeSettings, GateSettings, Settings, SlackSettings
from bot.github.gate import ChangeGate
from bot.server import build_server
from bot.slack import SlackTransport
from bot.github.webhooks import GitHubWebhook
from commands.gate import GatePolicy
from commands.permissions import Policy, Rule
from tests.conftest import GITHUB_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, Served, SlackHarness, git, shared_file

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
        self.served = None
        self.start()

    def stop(self) -> None:
        """Stop fluxbot and let go of what it holds (sockets, git processes), as a process exit would."""
        self.served.stop()
        self.transport.close()
        self.webhook.close()
        self.bot.close()
        gc.collect()  # the store's per-thread SQLite connections of the threads just ended

    def start(self) -> None:
        """Start (or restart) fluxbot: new objects, same SQLite state."""
        if self.served is not None:
            self.stop()
        settings = Settings(state_dir=self.state, policy=POLICY, forge=ForgeSettings(
            type="github", repository=self.github.full_name, base_url=self.github.base_url,
            git_url=str(self.github.bare_repo), seconds_between_writes=0))
        self.bot = build_bot(settings)
        slack = SlackSettings(bot_token=SLACK_BOT_TOKEN, signing_secret=SLACK_SIGNING_SECRET, api_url=self.slack.api_url)
        self.transport = SlackTransport(self.bot, self.bot.store, slack, clock=lambda: self.now[0])
        self.gate = ChangeGate(self.bot, self.bot.store, self.transport, GateSettings(
            policy=self.policy, change_channel="C_CHANGES", approvers_group="S_CAB"), clock=lambda: self.now[0])
        self.transport.gate = self.gate
        self.webhook = GitHubWebhook(SECRET, self.bot.store, self.gate.on_event, self.github.full_name)
        self.served = Served(build_server(self.transport.app, "127.0.0.1", 0, webhook=self.webhook))
        self.harness = SlackHarness(self.transport, self.served.port, self.slack)
        self.hook_url = f"http://127.0.0.1:{self.served.port}/github/webhook"
        # GitHub sends its webhooks to this fluxbot itself, at its own moments (opened during POST /pulls)
        self.github.hook_url, self.github.hook_secret = self.hook_url, SECRET
        self.github.after_delivery = self.webhook.drain

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
        payload["repository"] = self.github.repository()
        return payload

    def delivered(self, event: str, action: str = "") -> list[dict]:
        """What the GitHub stand-in sent fluxbot, in order."""
        return [d.payload for d in self.github.deliveries if d.event == event and (not action or d.payload.get("action") == action)]

    def promote(self, text: str) -> int:
        """Through Slack as U_ALICE, confirming when asked; the number of the PR opened."""
        before = len(self.github.pulls)
        answers = lambda: [p for p in self.slack.posts() if p["text"].startswith("! Confirm") or "Opened: PR" in p["text"]]  # noqa: E731
        seen = len(answers())
        self.harness.command(text)
        ask = self.slack.wait_for(lambda: answers()[seen:])[0]
        if ask["text"].startswith("! Confirm"):
            value = next(e for b in ask["blocks"] if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == "fluxbot_confirm")["value"]
            self.harness.click("fluxbot_confirm", value, "U_ALICE")
        self.slack.wait_for(lambda: len(self.github.pulls) > before)
        number = len(self.github.pulls)
        self.slack.wait_for(lambda: [p for p in self.slack.posts() if f"Opened: PR #{number}" in p["text"]])
        self.slack.wait_for(lambda: self.bot.store.thread_for("github", number))
        return number

    def hand_pr(self, tmp: Path, branch: str, change, user: str, base: str = "main", title: str = "by hand") -> dict:
        """Someone clones, commits `change(work)` on `branch` off `base`, pushes and opens a PR on GitHub."""
        work = tmp / f"hand-{branch.replace('/', '-')}"
        if not work.exists():
            git(tmp, "clone", "-q", str(self.github.bare_repo), str(work))
        git(work, "checkout", "-q", "-B", branch, f"origin/{base}")
        change(work)
        git(work, "add", "-A")
        git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", title)
        git(work, "push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch}")
        self.github.pushed(branch, user)
        return self.github.open_pull_by_hand(branch, title, user, base=base)

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
    environment.stop()


def test_signatures_and_ping(env) -> None:
    assert env.deliver("ping", env.payloads["ping"]) == 200
    assert env.deliver("ping", env.payloads["ping"], secret="wrong") == 401
    env.github.hook_url = ""  # GitHub's own deliveries are lost: only the forged one arrives
    number = env.promote("promote v0.4.0 to demo")
    assert env.deliver("pull_request", env.pr_event("pull_request.opened", number), secret="wrong") == 401
    assert env.github.gate_states(env.github.pulls[number]["head"]["sha"]) == []  # nothing ran


def test_promotion_is_gated_until_an_allowed_approver_approves(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    assert env.deliver("pull_request", env.pr_event("pull_request.opened", number)) == 202  # a redelivery changes nothing
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
    assert "Change approved by @U_CAB" in env.thread(number)[-1]  # by name: nobody is pinged

    assert env.github.merge_on_page(number, by="carol")[0] == 200
    merge_commit = env.github.pulls[number]["merge_commit_sha"]
    (closed,) = env.delivered("pull_request", "closed")
    assert env.deliver("pull_request", closed, delivery="d-merge") == 202  # GitHub's Redeliver
    assert env.deliver("pull_request", closed, delivery="d-merge") == 200  # ...and once more: a duplicate
    assert [t for t in env.thread(number) if "merged" in t] == [f"✓ PR #{number} merged\n  merge commit `{merge_commit[:12]}`"]


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
    check["repository"] = env.github.repository()
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
        environment.stop()
        system.stop()


# -- GitHub's real event order and the bypasses of issue #14 ------------------------------------

def values_edit(work: Path) -> None:
    path = work / "clusters/demo/apps/values/podinfo.yaml"
    path.write_text(path.read_text().replace("podinfo.production", "podinfo.prod"))


def change_requests(env) -> list[dict]:
    return [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and p["text"].startswith("! Change request")]


def test_four_eyes_hold_when_opened_arrives_before_labels_and_the_thread(env) -> None:
    """GitHub sends `opened` during POST /pulls: the requester is still the one who asked in Slack."""
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    opened = env.delivered("pull_request", "opened")[0]
    assert opened["pull_request"]["labels"] == []  # the stand-in sent it before any label existed
    assert env.github.gate_states(head) == ["pending"]
    # the request's own thread was linked, not a "hand-made PR" thread in the change channel
    assert env.bot.store.thread_for("github", number)["channel"] == "C_OPS"
    assert not [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and "changes productive" in p["text"]
                and not p.get("thread_ts")]
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_ALICE")
    assert "four eyes" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    assert env.github.gate_states(head) == ["pending"]


def test_an_emergency_rollback_is_expedited_whatever_the_event_order(env) -> None:
    env.github.hook_url = ""  # hold GitHub's deliveries back, then deliver them labels first
    number = env.promote("rollback demo because nginx crashloop")
    head = env.github.pulls[number]["head"]["sha"]
    held = [d for d in env.github.deliveries if d.event == "pull_request"]
    for delivery in [d for d in held if d.payload["action"] == "labeled"] + [d for d in held if d.payload["action"] == "opened"]:
        env.deliver("pull_request", delivery.payload)
    assert env.github.gate_states(head) == ["success"]
    assert "emergency rollback" in env.github.statuses[head][-1]["description"]


def test_a_rollback_label_on_a_hand_made_pr_expedites_nothing(env, tmp_path) -> None:
    pull = env.hand_pr(tmp_path, "fluxbot/rollback-demo-v0.1.0", values_edit, "mallory")
    first_head = pull["head"]["sha"]
    env.github.label(pull["number"], "rollback", "mallory")
    env.github.label(pull["number"], "fluxbot", "mallory")
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending"]

    def more(work: Path) -> None:
        (work / "clusters/demo/apps/values/podinfo.yaml").write_text(
            (work / "clusters/demo/apps/values/podinfo.yaml").read_text() + "# more\n")
    work = tmp_path / "hand-fluxbot-rollback-demo-v0.1.0"
    more(work)
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "more")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/fluxbot/rollback-demo-v0.1.0")
    env.github.pushed("fluxbot/rollback-demo-v0.1.0", "mallory")
    new_head = env.github.pulls[pull["number"]]["head"]["sha"]
    assert new_head != first_head
    assert env.github.gate_states(new_head) == ["pending"]
    assert not [p for p in env.slack.posts() if "Emergency change" in p["text"]]


def test_the_author_of_a_hand_made_pr_cannot_approve_it(env, tmp_path) -> None:
    env.gate.settings.identities = {"carol-gh": "U_CAB"}
    pull = env.hand_pr(tmp_path, "bump-by-hand", values_edit, "carol-gh")
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert "four eyes" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending"]


def test_an_unmapped_author_never_lets_an_unmapped_approver_through(env, tmp_path) -> None:
    pull = env.hand_pr(tmp_path, "bump-by-hand", values_edit, "stranger")
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert "cannot tell you apart" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending"]
    env.gate.settings.identities = {"cab-gh": "U_CAB"}  # now cab is known to be someone else
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending", "success"]


def test_a_values_file_renamed_out_of_a_productive_cluster_is_gated(env, tmp_path) -> None:
    def move_out(work: Path) -> None:
        (work / "docs").mkdir(exist_ok=True)
        git(work, "mv", "clusters/demo/apps/values/podinfo.yaml", "docs/podinfo-values.yaml")
    pull = env.hand_pr(tmp_path, "tidy-values", move_out, "stranger")
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending"]
    (request,) = change_requests(env)
    assert "demo" in request["text"]


def test_a_retarget_to_another_base_is_gated_again(env, tmp_path) -> None:
    # a base branch that already carries the productive change: against it the PR changes only docs
    env.hand_pr(tmp_path, "staging", values_edit, "stranger", title="staging")
    env.github.close_on_page(1, "stranger")

    def docs(work: Path) -> None:
        (work / "NOTES.md").write_text("notes\n")
    pull = env.hand_pr(tmp_path, "notes", docs, "stranger", base="staging")
    head = pull["head"]["sha"]
    assert env.github.gate_states(head) == ["success"]
    env.github.retarget(pull["number"], "main", "stranger")  # now it also brings the productive change
    assert env.github.gate_states(head) == ["success", "pending"]


def test_a_forged_gate_status_is_put_back_and_announced(env) -> None:
    env.github.tokens.add("ghp_mallory_token_0000000000")
    env.github.logins["ghp_mallory_token_0000000000"] = "mallory"
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    env.github.post_status(head, "success", "fluxbot/change-gate", "mallory", "looks good to me")
    assert env.github.gate_states(head) == ["pending", "success", "pending"]
    alarm = [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and "bypassed" in p["text"]]
    assert len(alarm) == 1 and "mallory" in alarm[0]["text"]
    assert any("forged" in r["command"] for r in env.bot.store.audit_log(20) if r["outcome"] == "bypass")


def test_an_admin_bypass_merge_is_announced_and_audited(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    assert env.github.merge_on_page(number, by="admin-ann", bypass=True)[0] == 200
    assert any("Change gate bypassed" in t and "admin-ann" in t for t in env.thread(number))
    assert [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and "bypassed" in p["text"]]
    assert [r for r in env.bot.store.audit_log(20) if r["outcome"] == "bypass" and r["user"] == "admin-ann"]


def test_a_merge_after_approval_is_no_bypass(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert env.github.merge_on_page(number, by="carol")[0] == 200
    assert not [p for p in env.slack.posts() if "bypassed" in p["text"]]


def test_a_direct_push_to_main_changing_a_productive_cluster_is_announced(env, tmp_path) -> None:
    work = tmp_path / "direct"
    git(tmp_path, "clone", "-q", str(env.github.bare_repo), str(work))
    before = git(work, "rev-parse", "HEAD")
    values_edit(work)
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "hotfix")
    git(work, "push", "-q", "origin", "HEAD:main")
    env.github.pushed("main", "root-rick", before=before)
    alarm = [p for p in env.slack.posts() if p["channel"] == "C_CHANGES" and "bypassed" in p["text"]]
    assert len(alarm) == 1 and "direct push" in alarm[0]["text"] and "root-rick" in alarm[0]["text"]


def test_events_of_other_repositories_are_ignored(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    other = env.pr_event("pull_request.closed", number, merged=True, merge_commit_sha="c0ffee" + "0" * 34)
    other["repository"] = {**other["repository"], "full_name": "someone/else"}
    assert env.deliver("pull_request", other) == 200  # acknowledged, dropped before any handler
    assert not [t for t in env.thread(number) if "merged" in t]
    env.gate.on_event("pull_request", other)  # and the gate itself checks too
    assert not [t for t in env.thread(number) if "merged" in t]
    same = dict(other, repository={**other["repository"], "full_name": "PLATFORM/Flux-Demo"})  # case-insensitive
    env.deliver("pull_request", same)
    assert [t for t in env.thread(number) if "merged" in t]


def test_a_delivery_that_failed_is_handled_on_redelivery(env) -> None:
    env.github.hook_url = ""
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    (opened,) = env.delivered("pull_request", "opened")
    env.github.fail("GET", rf"/pulls/{number}$", 500, "Server Error", times=1)
    assert env.deliver("pull_request", opened, delivery="d-1") == 202  # handling fails: GitHub is down
    assert env.github.gate_states(head) == []
    assert env.deliver("pull_request", opened, delivery="d-1") == 202  # "Redeliver" on GitHub's page
    assert env.github.gate_states(head) == ["pending"]
    assert env.deliver("pull_request", opened, delivery="d-1") == 200  # handled: now a duplicate


def test_a_failed_status_post_is_retried_not_skipped(env) -> None:
    env.github.hook_url = ""
    number = env.promote("promote v0.4.0 to demo")
    head = env.github.pulls[number]["head"]["sha"]
    env.github.fail("POST", r"/statuses/", 502, "Bad Gateway", times=1)  # urllib3 does not retry a POST
    env.deliver("pull_request", env.delivered("pull_request", "opened")[0])
    assert env.github.gate_states(head) == []
    env.deliver("pull_request", env.delivered("pull_request", "labeled")[0])  # any later event of the PR
    assert env.github.gate_states(head) == ["pending"]
    env.github.push_commit(number, head)  # nothing new: no second status
    env.gate.sweep()
    assert env.github.gate_states(head) == ["pending"]


def test_a_release_merged_on_the_pr_page_gets_its_tag_on_github(env) -> None:
    number = env.promote("release v0.5.0")
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB") if change_requests(env) else None
    assert env.github.merge_on_page(number, by="carol")[0] == 200
    merge = env.github.pulls[number]["merge_commit_sha"]
    assert env.github.git("rev-parse", "v0.5.0^{commit}") == merge
    assert env.github.git("cat-file", "-t", "v0.5.0") == "tag"  # annotated
    assert any("Tagged the merge commit as v0.5.0" in t for t in env.thread(number))


def test_merge_queue_gets_the_gate_of_the_queued_pr(env) -> None:
    number = env.promote("promote v0.4.0 to demo")
    group = env.github.queue(number)
    assert env.github.gate_states(group) == ["failure"]  # not approved yet
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    group = env.github.queue(number)
    assert env.github.gate_states(group) == ["success"]


def test_a_pr_at_githubs_file_cap_touches_every_productive_cluster(env, tmp_path) -> None:
    def many(work: Path) -> None:
        (work / "docs" / "bulk").mkdir(parents=True)
        for i in range(3000):
            (work / "docs" / "bulk" / f"{i}.txt").write_text(f"{i}\n")
    pull = env.hand_pr(tmp_path, "bulk-docs", many, "stranger")
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending"]
    (request,) = change_requests(env)
    assert "demo" in request["text"]
    assert any("more than GitHub lists (3000)" in t for t in env.thread(pull["number"]))
    files_calls = [r for r in env.github.requests if r.path.endswith("/files")]
    assert files_calls == []  # nothing to list: the count alone decides


def test_a_chat_merge_and_its_closed_webhook_run_the_merge_hooks_once(env) -> None:
    ran = []
    env.bot.merge_hooks.append(ran.append)
    number = env.promote("promote v0.4.0 to demo")
    env.harness.command(f"pr merge {number}")
    env.slack.wait_for(lambda: [p for p in env.slack.posts() if "cannot be merged yet" in p["text"]])
    assert env.github.pulls[number]["merged"] is False  # refused while the gate is pending
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    env.harness.command(f"pr merge {number}")
    env.slack.wait_for(lambda: [p for p in env.slack.posts() if f"Merged PR #{number}" in p["text"]])
    env.webhook.drain()
    assert env.github.pulls[number]["merged"] is True
    assert [pr.number for pr in ran] == [number]
    assert not [p for p in env.slack.posts() if "bypassed" in p["text"]]


def test_catch_up_reads_only_open_prs_and_unsettled_threads(env) -> None:
    first = env.promote("promote v0.4.0 to demo")
    env.github.close_on_page(first, "carol")  # fluxbot saw it: its thread is settled
    second = env.promote("rollback demo")
    env.github.hook_url = ""
    env.start()
    env.github.hook_url = ""  # fluxbot is back, GitHub's deliveries are not needed here
    env.github.requests.clear()
    env.gate.catch_up()
    paths = [r.path for r in env.github.requests if r.method == "GET"]
    assert f"/repos/platform/flux-demo/pulls/{first}" not in paths
    assert f"/repos/platform/flux-demo/pulls/{second}" in paths


def test_whoever_pushed_to_a_pr_cannot_approve_it(env, tmp_path) -> None:
    env.gate.settings.identities = {"carol-gh": "U_CAB", "stranger": "U_STRANGER"}
    pull = env.hand_pr(tmp_path, "bump-by-hand", values_edit, "stranger")

    def more(work: Path) -> None:
        (work / "NOTES.md").write_text("carol was here\n")
    work = tmp_path / "hand-bump-by-hand"
    more(work)
    git(work, "add", "-A")
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "more")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/bump-by-hand")
    env.github.pushed("bump-by-hand", "carol-gh")  # carol pushed the newest commit
    head = env.github.pulls[pull["number"]]["head"]["sha"]
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert "four eyes" in env.slack.of("chat.postEphemeral")[-1].params["text"]
    assert env.github.gate_states(head) == ["pending"]


def test_a_reopened_pr_is_gated_anew_and_can_be_approved(env, tmp_path) -> None:
    env.gate.settings.identities = {"cab-gh": "U_CAB"}
    pull = env.hand_pr(tmp_path, "bump-by-hand", values_edit, "stranger")
    env.github.close_on_page(pull["number"], "stranger")
    env.github.pulls[pull["number"]].update(state="open")
    with env.github._lock:
        env.github._pull_event("reopened", env.github.pulls[pull["number"]], "stranger")
    env.github._flush()
    assert env.github.gate_states(pull["head"]["sha"]) == ["pending", "pending"]  # closed, so gated anew
    env.click("fluxbot_gate_approve", env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert env.github.gate_states(pull["head"]["sha"])[-1] == "success"
