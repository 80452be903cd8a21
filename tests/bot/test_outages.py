"""Outages of the forge and the git host: retried with backoff, the user told once, nothing lost
when they come back, and a clear word when fluxbot gives up."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.cli import build_bot
from bot.config import ForgeSettings, Settings, SlackSettings
from bot.server import build_server
from bot.slack import SlackTransport
from bot.git.workspace import OriginUnavailable, Workspace
from commands.permissions import Policy, Rule
from tests.conftest import GITHUB_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, Served, SlackHarness, say

POLICY = Policy(rules=(Rule(actions=("*",), users=("U_ALICE",)),), read_channels=("*",))
BRANCH = "fluxbot/promote-demo-v0.4.0"
LATER = 3600.0  # "once it is due": the retry loop's clock, far enough ahead


class Env:
    """fluxbot's HTTP app with GitHub as the forge, against both stand-ins."""

    def __init__(self, github, slack, state: Path) -> None:
        self.github, self.slack = github, slack
        self.bot = build_bot(Settings(state_dir=state, policy=POLICY, forge=ForgeSettings(
            type="github", repository=github.full_name, base_url=github.base_url, git_url=str(github.bare_repo),
            seconds_between_writes=0)))
        settings = SlackSettings(bot_token=SLACK_BOT_TOKEN, signing_secret=SLACK_SIGNING_SECRET, api_url=slack.api_url)
        self.transport = SlackTransport(self.bot, self.bot.store, settings)
        self.served = Served(build_server(self.transport.app, "127.0.0.1", 0))
        self.harness = SlackHarness(self.transport, self.served.port, slack)

    def thread(self) -> list[str]:
        """Replies in threads (each test here asks one thing, so there is one thread)."""
        return [p["text"] for p in self.slack.posts() if p.get("thread_ts")]

    def journal(self) -> list[tuple[str, int]]:
        return [(r["state"], r["attempts"]) for r in self.bot.store.query("SELECT * FROM requests ORDER BY id")]

    def confirm(self) -> None:
        ask = self.slack.wait_for(lambda: [p for p in self.slack.posts() if p["text"].startswith("! Confirm")])[-1]
        value = next(e["value"] for b in ask["blocks"] if b["type"] == "actions" for e in b["elements"]
                     if e["action_id"] == "fluxbot_confirm")
        self.harness.click("fluxbot_confirm", value, "U_ALICE")


@pytest.fixture
def env(github_standin, slack_standin, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    environment = Env(github_standin, slack_standin, tmp_path / "state")
    yield environment
    environment.served.stop()
    environment.transport.close()
    environment.bot.close()


def test_a_github_outage_is_told_once_retried_and_answered_when_it_is_back(env) -> None:
    env.github.outage = 503
    env.harness.command("promote v0.4.0 to demo")
    told = env.slack.wait_for(lambda: [t for t in env.thread() if "keeps this request" in t])
    assert "GitHub is failing (503 Service Unavailable)" in told[0] and "nothing was changed yet" in told[0]
    # the HTTP layer retried the read with backoff before giving the request to the journal
    assert [(r.method, r.path) for r in env.github.requests] == [("GET", "/repos/platform/flux-demo")] * 3
    assert env.github.fluxbot_branches() == [] and env.github.pulls == {}
    assert env.journal() == [("running", 0)]

    env.transport.recover(now=time.time() + LATER)  # still down: retried, and nothing more is said
    assert env.journal() == [("running", 1)]
    assert len([t for t in env.thread() if "keeps this request" in t]) == 1 and len(env.thread()) == 1
    env.transport.recover(now=time.time() + LATER + 1)  # not due yet: the next try backs off
    assert env.journal() == [("running", 1)]

    env.github.outage = 0  # GitHub is back
    env.transport.recover(now=time.time() + 2 * LATER)
    env.confirm()  # demo is productive: the requester confirms, as before the outage
    env.slack.wait_for(lambda: [t for t in env.thread() if "Opened: PR #1 Promote demo to v0.4.0" in t])
    assert env.github.fluxbot_branches() == [BRANCH] and len(env.github.open_pulls()) == 1
    assert {p["thread_ts"] for p in env.slack.posts() if p.get("thread_ts")} == {env.bot.store.thread_for("github", 1)["thread_ts"]}
    assert ("running", 2) not in env.journal() and all(state == "answered" for state, _ in env.journal())


def test_a_failure_after_the_push_is_kept_and_opens_the_pr_later(github_bot, github_standin) -> None:
    bot = github_bot()
    github_standin.fail("POST", r"/pulls$", 502, "Bad Gateway")
    out = say(bot, "promote v0.4.0 to demo")
    assert out.startswith("! GitHub is failing (502 Bad Gateway)") and "keeps this request" in out, out
    assert github_standin.fluxbot_branches() == [] and github_standin.pulls == {}  # the pushed branch was removed
    ((request, response),) = bot.recover(now=time.time() + LATER)
    assert request.text == "promote v0.4.0 to demo" and not response.pending
    assert [m.title for m in response.messages] == ["Opened: PR #1 Promote demo to v0.4.0"]
    bot.finish(response)
    assert [r["state"] for r in bot.store.query("SELECT state FROM requests")] == ["answered"]
    assert github_standin.fluxbot_branches() == [BRANCH] and len(github_standin.open_pulls()) == 1


def test_after_the_last_attempt_fluxbot_says_it_gave_up(github_bot, github_standin) -> None:
    bot = github_bot()
    github_standin.outage = 502
    assert "keeps this request" in say(bot, "rollback demo")
    for attempt in range(1, 4):
        recovered = bot.recover(now=time.time() + attempt * LATER, max_attempts=2)
        for _, response in recovered:
            bot.finish(response)
    # the rollback was fixed to its target while it waited (the git host was up)
    assert [m.title for _, r in recovered for m in r.messages] == ["Gave up on `rollback demo from v0.3.0 to v0.2.0` after 2 retries"]
    assert [r["state"] for r in bot.store.query("SELECT state FROM requests")] == ["abandoned"]
    assert bot.recover(now=time.time() + 9 * LATER) == []  # and it stays given up
    assert github_standin.fluxbot_branches() == [] and github_standin.pulls == {}


@pytest.mark.parametrize("text", ["prs", "pr merge 1"])
def test_reads_and_merges_during_an_outage_are_answered_at_once_not_kept(github_bot, github_standin, text) -> None:
    # a merge carried out an hour after it was asked for would surprise everyone: it is refused now
    bot = github_bot()
    github_standin.outage = 503
    out = say(bot, text)
    assert out.startswith("✗ GitHub is failing (503") and "keeps this request" not in out, out
    assert [r["state"] for r in bot.store.query("SELECT state FROM requests")] == ["answered"]


def test_an_unreachable_git_host_is_an_outage_not_a_refusal(tmp_path: Path) -> None:
    workspace = Workspace("http://127.0.0.1:9/fleet.git", tmp_path / "cache")
    with pytest.raises(OriginUnavailable, match="cannot clone the repository"):
        workspace.reader()
    assert not (tmp_path / "cache" / "mirror.git").exists()
