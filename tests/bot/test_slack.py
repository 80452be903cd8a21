"""The Slack app over real HTTP: signed requests in, Web API calls recorded by the stand-in."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from commands.permissions import Policy, Rule
from tests.conftest import branches, shared_file

POLICY = Policy(
    rules=(
        Rule(actions=("promote", "rollback", "merge"), clusters=("*",), users=("U_ALICE",), groups=("S_SRE",)),
        Rule(actions=("promote",), clusters=("demo",), users=("U_DEV",)),
    ),
    read_channels=("C_OPS",),
)


def roots(standin) -> list[dict]:
    return [p for p in standin.posts() if not p.get("thread_ts")]


def button(post: dict, action_id: str) -> dict:
    actions = [b for b in post["blocks"] if b["type"] == "actions"]
    return next(e for e in actions[0]["elements"] if e["action_id"] == action_id)


def test_signed_help_is_acked_and_answered_in_a_thread(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    status, body = harness.command("help")
    assert (status, body) == (200, "")
    root = slack_standin.wait_for(lambda: roots(slack_standin))[0]
    assert root["channel"] == "C_OPS" and root["text"] == "<@U_ALICE> asked: `/flux help`"
    thread = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])
    assert slack_standin.of("chat.postMessage")[0].params is root
    assert thread[0]["blocks"][0]["type"] == "header" and "fluxbot commands" in thread[0]["blocks"][0]["text"]["text"]
    assert "promote <version> to <cluster>" in thread[0]["text"]  # the text fallback
    assert all(c.headers["authorization"] == "Bearer xoxb-test" for c in slack_standin.calls)


@pytest.mark.parametrize("secret, age", [("wrong-secret", 0), ("s", 60 * 10)])
def test_wrong_or_stale_signatures_get_401_and_nothing_runs(slack_app, slack_standin, secret, age) -> None:
    import time

    harness = slack_app(POLICY)
    status, _ = harness.command("promote v0.4.0 to demo", secret=secret, timestamp=int(time.time()) - age)
    assert status == 401
    assert slack_standin.posts() == []
    assert harness.transport.bot.store.audit_log() == []


def test_promote_to_a_non_productive_cluster_opens_a_pr_and_links_the_thread(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.command("rollback demo")
    opened = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])[0]
    root_call = slack_standin.of("chat.postMessage")[0]
    assert root_call.params.get("thread_ts") is None and opened["thread_ts"]
    fields = [b for b in opened["blocks"] if b["type"] == "section" and "fields" in b][0]["fields"]
    assert {"type": "mrkdwn", "text": "*Cluster*\ndemo"} in fields
    assert {"type": "mrkdwn", "text": "*Change*\nv0.4.0 -> v0.3.0"} in fields
    assert branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]
    link = harness.transport.store.thread_for("local", 1)
    assert link["channel"] == "C_OPS" and link["requester"] == "U_ALICE"
    assert link["thread_ts"] == opened["thread_ts"]


def test_productive_promotion_asks_the_requester_first(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.command("promote v0.4.0 to prod-eu")
    ask = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")])[0]
    confirm = button(ask, "fluxbot_confirm")
    assert confirm["style"] == "danger" and confirm["confirm"]["title"]["text"] == "Open the PR?"
    assert button(ask, "fluxbot_cancel")["value"] == confirm["value"]
    assert branches(example_repo) == []  # nothing is written before the confirmation

    harness.click("fluxbot_confirm", confirm["value"], user="U_MALLORY")
    refusal = slack_standin.wait_for(lambda: slack_standin.of("chat.postEphemeral"))[0]
    assert refusal.params["user"] == "U_MALLORY" and "Only <@U_ALICE> can confirm" in refusal.params["text"]
    assert branches(example_repo) == []

    harness.click("fluxbot_confirm", confirm["value"], user="U_ALICE")
    opened = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])[0]
    assert opened["thread_ts"] == ask["thread_ts"]
    assert branches(example_repo) == ["fluxbot/promote-prod-eu-v0.4.0"]
    assert "Confirmed by <@U_ALICE>" in slack_standin.of("chat.update")[0].params["text"]

    harness.click("fluxbot_confirm", confirm["value"], user="U_ALICE")  # a double click confirms once
    slack_standin.wait_for(lambda: len(slack_standin.of("chat.postEphemeral")) == 2)
    assert len([p for p in slack_standin.posts() if "Opened: PR" in p["text"]]) == 1


def test_cancel_and_expiry(slack_app, slack_standin, example_repo) -> None:
    now = [1000.0]
    harness = slack_app(POLICY, ttl=60, clock=lambda: now[0])
    harness.command("promote v0.4.0 to prod-eu")
    ask = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")])[0]
    assert "Expires in 1 min." in json.dumps(ask["blocks"])
    now[0] += 61
    harness.click("fluxbot_confirm", button(ask, "fluxbot_confirm")["value"], user="U_ALICE")
    expired = slack_standin.wait_for(lambda: slack_standin.of("chat.update"))[0]
    assert "Confirmation expired" in expired.params["text"]
    assert branches(example_repo) == []

    harness.command("promote v0.4.0 to prod-eu")
    second = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")][1:])[0]
    harness.click("fluxbot_cancel", button(second, "fluxbot_cancel")["value"], user="U_ALICE")
    slack_standin.wait_for(lambda: len(slack_standin.of("chat.update")) == 2)
    assert "Cancelled by <@U_ALICE>" in slack_standin.of("chat.update")[1].params["text"]
    assert branches(example_repo) == []


def test_a_user_without_permission_is_told_who_may(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.command("rollback demo", user="U_DEV")
    refusal = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "may not run" in p["text"]])[0]
    assert "only <!subteam^S_SRE>, <@U_ALICE> may `rollback` on `demo`" in refusal["text"]
    assert branches(example_repo) == []


def test_user_group_members_may_act(slack_app, slack_standin, example_repo) -> None:
    slack_standin.usergroups["S_SRE"] = ["U_BOB"]
    harness = slack_app(POLICY)
    harness.command("rollback demo", user="U_BOB")
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])
    assert slack_standin.of("usergroups.users.list")[0].params["usergroup"] == "S_SRE"
    harness.command("status", user="U_BOB")
    slack_standin.wait_for(lambda: len(roots(slack_standin)) == 2)
    assert len(slack_standin.of("usergroups.users.list")) == 1  # cached


def test_reads_only_in_configured_channels(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    harness.command("status", channel="C_RANDOM")
    refusal = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert "fluxbot answers read commands in <#C_OPS>" in refusal["text"]


def test_retries_and_redeliveries_do_not_repeat_work(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    for retry in range(3):
        status, _ = harness.command("rollback demo", trigger_id="same.trigger",
                                    headers={"X-Slack-Retry-Num": str(retry)} if retry else None)
        assert status == 200
    for _ in range(2):
        assert harness.mention("status", event_id="Ev42")[0] == 200
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])
    slack_standin.wait_for(lambda: len(roots(slack_standin)) >= 2)
    import time

    time.sleep(0.5)  # give a duplicate the chance to show up before counting
    assert len(roots(slack_standin)) == 2
    assert len(harness.transport.bot.forge.open_prs()) == 1


def test_a_mention_runs_the_same_command(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    harness.mention("versions", event_id="Ev7")
    reply = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert "4 releases" in reply["text"]
    assert roots(slack_standin)[0]["text"] == "<@U_ALICE> asked: `versions`"


def test_url_verification_answers_the_challenge(slack_app) -> None:
    harness = slack_app(POLICY)
    body = shared_file("fixtures/payloads/slack/url_verification.json").read_text()
    status, answer = harness.post(body, "application/json")
    assert status == 200 and json.loads(answer)["challenge"] == json.loads(body)["challenge"]


def test_a_bad_command_gets_a_clear_reply(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.command("promote v0.4.0 to ../etc")
    reply = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert "not a valid cluster name" in reply["text"] and "Traceback" not in reply["text"]
    assert branches(example_repo) == []


def test_an_oversized_command_is_not_echoed_back(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.command("promote v0.4.0 to demo " + "x" * 3_000 + " " + "y" * 3_000)
    reply = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert "fluxbot takes at most 4,000" in reply["text"]
    assert all(len(json.dumps(p)) < 2_000 for p in slack_standin.posts())  # neither the announcement nor the reply
    assert branches(example_repo) == []


def test_rate_limited_post_is_retried(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    slack_standin.rate_limit("chat.postMessage", retry_after=1, times=1)
    harness.command("versions")
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])
    assert len([c for c in slack_standin.of("chat.postMessage") if not c.params.get("thread_ts")]) == 2  # 429, then ok


def test_not_in_channel_is_told_to_the_user_through_the_response_url(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    slack_standin.fail("chat.postMessage", "not_in_channel")
    harness.command("rollback demo")
    told = slack_standin.wait_for(lambda: [c for c in slack_standin.calls if c.method.startswith("response/")])[0]
    assert "invite it with `/invite @fluxbot`" in told.params["text"] and told.params["response_type"] == "ephemeral"
    assert branches(example_repo) == []


def test_the_shell_and_slack_render_the_same_message_objects(example_repo: Path, make_bot) -> None:
    from bot.blocks import fallback, to_blocks
    from bot.render import to_text

    (message,) = make_bot(example_repo).handle("status prod-eu", "alice")
    assert fallback(message) == to_text(message)
    blocks = to_blocks(message)
    assert blocks[0]["text"]["text"].endswith("Cluster prod-eu")
    assert {"type": "mrkdwn", "text": "*Pin*\nv0.3.0"} in blocks[1]["fields"]


def test_a_slack_outage_loses_no_answer(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    bot = harness.transport.bot
    slack_standin.fail_in_threads = True
    harness.command("rollback demo")
    slack_standin.wait_for(lambda: [c for c in slack_standin.of("chat.postMessage") if c.params.get("thread_ts")])
    slack_standin.wait_for(lambda: bot.store.query("SELECT * FROM requests WHERE state = 'running'"))
    assert len(bot.forge.open_prs()) == 1  # the work was done; only the answer did not get through
    slack_standin.fail_in_threads = False  # Slack is back
    harness.transport.recover()  # not due yet: a request still in flight is left alone
    assert len(bot.store.query("SELECT * FROM requests WHERE state = 'running'")) == 1
    harness.transport.recover(now=time.time() + 121)  # the retry loop, once it is due
    answers = [p["text"] for p in slack_standin.posts() if p.get("thread_ts") and "PR #1" in p["text"]]
    assert len(answers) == 2 and "this change is already open: PR #1" in answers[-1]  # the failed one, then the retry
    assert len(bot.forge.open_prs()) == 1 and branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]
    assert bot.store.query("SELECT * FROM requests WHERE state = 'running'") == []
