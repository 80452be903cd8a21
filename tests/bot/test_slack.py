"""The Slack app over real HTTP: signed requests in, Web API calls recorded by the stand-in."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from commands.permissions import Policy, Rule
from tests.conftest import SLACK_BOT_TOKEN as SLACK_TOKEN, branches, git, shared_file

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
    assert root["channel"] == "C_OPS" and root["text"].startswith("• @U_ALICE asked\n  `/flux help`")
    thread = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])
    assert slack_standin.of("chat.postMessage")[0].params is root
    assert thread[0]["blocks"][0]["type"] == "header" and "fluxbot commands" in thread[0]["blocks"][0]["text"]["text"]
    assert "promote &lt;version&gt; to &lt;cluster&gt;" in thread[0]["text"]  # the text fallback, escaped
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
    assert {"type": "mrkdwn", "text": "*Change*\nv0.4.0 -&gt; v0.3.0"} in fields  # `>` escaped, shown as typed
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
    assert refusal.params["user"] == "U_MALLORY" and "Only @U_ALICE can confirm" in refusal.params["text"]
    assert branches(example_repo) == []

    harness.click("fluxbot_confirm", confirm["value"], user="U_ALICE")
    opened = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])[0]
    assert opened["thread_ts"] == ask["thread_ts"]
    assert branches(example_repo) == ["fluxbot/promote-prod-eu-v0.4.0"]
    assert "Confirmed by @U_ALICE" in slack_standin.of("chat.update")[0].params["text"]

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
    assert "Cancelled by @U_ALICE" in slack_standin.of("chat.update")[1].params["text"]
    assert branches(example_repo) == []


def test_a_refusal_says_who_may_without_notifying_them(slack_app, slack_standin, example_repo) -> None:
    """Permission refusals name the group by handle and users by name: no mention markup, nobody paged."""
    slack_standin.users.update(U_ALICE="alice")
    slack_standin.group_handles.update(S_SRE="sre-oncall")
    harness = slack_app(POLICY)
    harness.command("rollback demo", user="U_DEV")
    refusal = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "may not run" in p["text"]])[0]
    everything = json.dumps(refusal)
    assert "<!subteam" not in everything and "<@" not in everything
    assert "only @sre-oncall, @alice may `rollback` on `demo`" in refusal["text"]
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
        assert harness.mention("status", event_id="Ev42", ts="1700000040.000100")[0] == 200
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts") == "1700000040.000100"])
    time.sleep(0.5)  # give a duplicate the chance to show up before counting
    assert len(roots(slack_standin)) == 1
    assert len([p for p in slack_standin.posts() if p.get("thread_ts") == "1700000040.000100"]) == 1
    assert len(harness.transport.bot.forge.open_prs()) == 1


def test_a_mention_is_answered_in_a_thread_under_the_users_own_message(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    harness.mention("versions", event_id="Ev7", ts="1700000001.000200")
    reply = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert "4 releases" in reply["text"]
    assert reply["thread_ts"] == "1700000001.000200"  # the user's message, not a second "asked" post
    assert roots(slack_standin) == []


def test_a_mention_anywhere_in_the_text_works(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    harness.mention("hey @fluxbot versions", event_id="Ev8", ts="1700000002.000300")
    reply = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert "4 releases" in reply["text"] and reply["thread_ts"] == "1700000002.000300"


def test_a_mention_inside_a_thread_is_answered_in_that_thread(slack_app, slack_standin) -> None:
    harness = slack_app(POLICY)
    harness.mention("versions", event_id="Ev9", ts="1700000003.000400", thread_ts="1700000000.000100")
    reply = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])[0]
    assert reply["thread_ts"] == "1700000000.000100"


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
    from bot.render import to_text
    from bot.slack.blocks import fallback, to_blocks
    from bot.slack.markup import unescape

    (message,) = make_bot(example_repo).handle("status prod-eu", "alice")
    assert unescape(fallback(message)) == to_text(message)  # the same layout; Slack's copy is escaped
    blocks = to_blocks(message)
    assert blocks[0]["text"]["text"].endswith("Cluster prod-eu")
    assert {"type": "mrkdwn", "text": "*Pin*\nv0.3.0"} in blocks[1]["fields"]


def test_a_slack_outage_loses_no_answer_and_runs_nothing_twice(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    bot = harness.transport.bot
    slack_standin.fail_in_threads = True
    harness.command("rollback demo")
    slack_standin.wait_for(lambda: [c for c in slack_standin.of("chat.postMessage") if c.params.get("thread_ts")])
    slack_standin.wait_for(lambda: bot.store.query("SELECT * FROM outbox WHERE state = 'pending' AND attempts = 1"))
    assert len(bot.forge.open_prs()) == 1  # the work was done; only the answer did not get through
    slack_standin.fail_in_threads = False  # Slack is back
    harness.transport.recover()  # not due yet: the post backs off
    assert [p for p in slack_standin.posts() if p.get("thread_ts")] == []
    harness.transport.recover(now=time.time() + 121)  # the retry loop, once it is due
    answers = [p["text"] for p in slack_standin.posts() if p.get("thread_ts")]
    assert len(answers) == 1 and "Opened: PR #1" in answers[0]  # the answer itself, once; the request was not re-run
    assert len(bot.forge.open_prs()) == 1 and branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]
    assert bot.store.query("SELECT * FROM requests WHERE state = 'running'") == []


# -- what arrives: Slack's markup decoded once, before parsing ------------------------------------

APP_POLICY = Policy(rules=(Rule(actions=("*",), users=("U_ALICE",)),), read_channels=("*",))


@pytest.mark.parametrize("how", ["mention", "slash command, should_escape on", "slash command, should_escape off"])
def test_markup_in_set_values_reaches_git_as_plain_text(slack_app, slack_standin, example_repo, how) -> None:
    harness = slack_app(APP_POLICY)
    text = "app add podinfo to test set ingress.host=podinfo.example.com owner=a&b note=<x>"
    if how == "mention":
        harness.mention(text, event_id="Ev-app")
    else:
        harness.command(text, should_escape=how.endswith("on"))
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])
    (branch,) = branches(example_repo)
    changed = git(example_repo, "diff", "main", branch)
    assert re.search(r'host: "?podinfo\.example\.com"?\n', changed), changed
    assert re.search(r'owner: "?a&b"?\n', changed) and re.search(r'note: "?<x>"?', changed), changed
    assert "<http" not in changed and "&amp;" not in changed and "&lt;" not in changed
    assert harness.transport.bot.store.audit_log()[0]["command"] == text  # recorded as typed


def test_a_group_mention_in_a_freeze_reason_is_stored_plain_and_never_pings_again(slack_app, slack_standin) -> None:
    slack_standin.group_handles.update(S_SRE="sre-oncall")
    slack_standin.users.update(U_ALICE="alice")
    harness = slack_app(APP_POLICY)
    harness.mention("freeze prod-eu because @sre-oncall paged & <b>", event_id="Ev-f", ts="1700000010.000100")
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Froze prod-eu" in p["text"]])
    store = harness.transport.bot.store
    assert store.freezes()["prod-eu"][0] == "@sre-oncall paged & <b>"
    harness.mention("audit", event_id="Ev-a", ts="1700000011.000100")
    audit = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Audit log" in p["text"]])[0]
    harness.mention("promote v0.4.0 to prod-eu", event_id="Ev-p", ts="1700000012.000100")
    refused = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "frozen by" in p["text"]])[0]
    for post in (audit, refused):
        assert "<!subteam" not in json.dumps(post) and "<b>" not in json.dumps(post)
    assert "@sre-oncall paged &amp; &lt;b&gt;" in json.dumps(audit["blocks"])
    assert "frozen by @alice" in refused["text"] and " @alice " in json.dumps(audit["blocks"])  # people by name


# -- what leaves: untrusted text escaped, nobody pinged, no text Slack refuses --------------------

def test_untrusted_text_in_an_asked_post_and_audit_is_escaped(slack_app, slack_standin) -> None:
    harness = slack_app(APP_POLICY)
    harness.command("status <!channel> <http://evil.example|click>")
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])
    harness.command("audit")
    audit = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Audit log" in p["text"]])[0]
    for post in slack_standin.posts():
        shown = json.dumps(post)
        assert "<!channel>" not in shown and "<http://evil" not in shown
    assert "&lt;!channel&gt;" in json.dumps(audit["blocks"])


def test_headers_are_plain_and_mentions_and_code_go_to_a_section() -> None:
    from bot.slack.blocks import to_blocks
    from commands.model import Message
    from tests.standins.slack import payload_problems

    blocks = to_blocks(Message("Change gate: pending, awaiting approval in <#C_CHANGES> for `abc1234`"))
    assert blocks[0]["type"] == "header" and "<" not in blocks[0]["text"]["text"] and "`" not in blocks[0]["text"]["text"]
    assert blocks[1]["text"]["text"] == "Change gate: pending, awaiting approval in <#C_CHANGES> for `abc1234`"
    assert payload_problems({"channel": "C", "blocks": blocks, "text": "x"}) == []


def test_no_empty_text_object_is_ever_sent() -> None:
    from bot.slack.blocks import to_pages
    from commands.model import Message
    from tests.standins.slack import payload_problems

    for message in (Message("Status `ci` failure", lines=("",)), Message("x", fields=(("Reason", ""),)),
                    Message("x", context=" "), Message("", tone="error")):
        for page in to_pages(message):
            assert payload_problems({"channel": "C", "blocks": page.blocks, "text": page.text}) == []


# -- long answers: everything reachable, within Slack's limits, saying how much is left -----------

def test_status_of_a_thousand_clusters_is_fully_reachable(slack_app, slack_standin, tmp_path) -> None:
    from bench.run import big_repo

    repo = big_repo(tmp_path / "big", 1000, 2, 3, 6)
    harness = slack_app(APP_POLICY, repo=repo)
    harness.mention("status", event_id="Ev-big", ts="1700000020.000100")
    posts = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p.get("thread_ts")])
    time.sleep(0.5)
    posts = [p for p in slack_standin.posts() if p.get("thread_ts")]
    shown = "\n".join(b["text"]["text"] for p in posts for b in p["blocks"] if b["type"] == "section" and "text" in b)
    assert all(f"c{n:04d} " in shown for n in range(1000))
    assert all(len(p["blocks"]) <= 50 for p in posts)


def test_a_long_message_is_paged_and_every_page_says_how_much_is_left() -> None:
    from bot.slack.blocks import to_pages
    from commands.model import Message
    from tests.standins.slack import payload_problems

    rows = (("cluster", "pin"),) + tuple((f"cluster-{n:05d}-" + "x" * 40, "v1.2.3") for n in range(5000))
    pages = to_pages(Message("5000 clusters", lines=tuple(f"line {n}" for n in range(300)), table=rows, context="end"))
    assert len(pages) > 1
    for index, page in enumerate(pages, start=1):
        assert payload_problems({"channel": "C", "blocks": page.blocks, "text": page.text}) == []
        if index < len(pages):
            assert f"part {index} of {len(pages)}" in page.blocks[-1]["elements"][0]["text"]
            assert "more rows" in page.blocks[-1]["elements"][0]["text"]
    shown = "\n".join(b["text"]["text"] for p in pages for b in p.blocks if b["type"] == "section" and "text" in b)
    assert all(f"cluster-{n:05d}-" in shown for n in range(5000)) and all(f"line {n}\n" in shown for n in range(299))
    assert pages[-1].blocks[-1]["elements"][0]["text"] == "end"


def test_a_confirmation_for_sixty_clusters_lists_them_all() -> None:
    from bot.slack.blocks import confirm_buttons, to_pages
    from commands.model import Message

    lines = tuple(f"Promote cluster-{n:02d}: `v0.3.0` -> `v0.4.0` (productive)" for n in range(60))
    (page,) = to_pages(Message("Confirm", lines=lines), confirm_buttons("cid", "\n".join(lines)))
    shown = "\n".join(b["text"]["text"] for b in page.blocks if b["type"] == "section")
    assert all(f"cluster-{n:02d}" in shown for n in range(60))
    dialog = page.blocks[-1]["elements"][0]["confirm"]["text"]["text"]
    assert len(dialog) <= 300 and "more, listed in the message" in dialog


# -- posts are never lost or doubled ----------------------------------------------------------------

def test_an_ephemeral_refusal_goes_into_the_thread_of_the_button(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.command("promote v0.4.0 to prod-eu")
    ask = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")])[0]
    harness.click("fluxbot_confirm", button(ask, "fluxbot_confirm")["value"], user="U_MALLORY",
                  message_ts="1700000999.000100", thread_ts=ask["thread_ts"])
    refusal = slack_standin.wait_for(lambda: slack_standin.of("chat.postEphemeral"))[0]
    assert refusal.params["thread_ts"] == ask["thread_ts"] and refusal.params["user"] == "U_MALLORY"


def _two_demo_clusters(repo: Path) -> None:
    """demo and a copy of it, demo2, both at v0.3.0: a promotion to both answers with two messages."""
    import shutil

    shutil.copytree(repo / "clusters/demo", repo / "clusters/demo2")
    for path in (repo / "clusters/demo2").rglob("*.yaml"):
        path.write_text(path.read_text().replace("demo", "demo2"))
    for name in ("demo", "demo2"):
        path = repo / f"clusters/{name}/infrastructure.yaml"
        path.write_text(path.read_text().replace("v0.4.0", "v0.3.0"))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "demo2")


def test_a_rate_limited_multi_cluster_answer_is_delivered_once_and_complete(slack_app, slack_standin, example_repo) -> None:
    _two_demo_clusters(example_repo)
    harness = slack_app(POLICY)
    bot = harness.transport.bot
    slack_standin.rate_limit("chat.postMessage", retry_after=1, times=4)  # more than the client's own retries
    harness.mention("promote v0.4.0 to demo, demo2", event_id="Ev-multi", ts="1700000030.000100")
    slack_standin.wait_for(lambda: bot.store.query("SELECT * FROM outbox WHERE state = 'pending' AND attempts > 0"))
    slack_standin.wait_for(lambda: len(bot.forge.open_prs()) == 2)
    harness.transport.recover(now=time.time() + 3600)
    answers = [p["text"] for p in slack_standin.posts() if p.get("thread_ts") == "1700000030.000100"]
    assert len(answers) == 2 and all("Opened: PR" in a for a in answers), answers
    assert not any("already open" in a for a in answers)
    assert len(bot.forge.open_prs()) == 2


def test_posts_to_one_channel_are_paced_to_slacks_rate(slack_app, slack_standin) -> None:
    """About one post a second per channel after a short burst: the stand-in never has to answer 429."""
    from bot.slack.transport import Pacer

    slack_standin.post_burst = 3  # Slack allows short bursts; fluxbot stays below them
    harness = slack_app(POLICY)
    harness.transport.pacer = Pacer(rate=1.0, burst=2)
    for n in range(4):
        harness.command("versions", trigger_id=f"t{n}")
    slack_standin.wait_for(lambda: len(slack_standin.posts()) == 8, timeout=30)
    assert [c for c in slack_standin.of("chat.postMessage") if not c.taken] == []  # no 429 was needed


# -- the change gate's posts: escaped, never lost --------------------------------------------------

from tests.bot.test_gate import env  # noqa: E402,F401 (the change gate's environment, built as test_gate.py does)


@pytest.fixture
def gate_env(env):
    return env


def _hand_made_pr(env, tmp_path: Path, title: str) -> dict:
    work = tmp_path / "hand"
    git(tmp_path, "clone", "-q", str(env.github.bare_repo), str(work))
    git(work, "checkout", "-q", "-b", "by-hand")
    path = work / "clusters/demo/apps/values/podinfo.yaml"
    path.write_text(path.read_text().replace("podinfo.production", "podinfo.prod"))
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "values")
    git(work, "push", "-q", "origin", "HEAD")
    _status, pull, _headers = env.github._create_pull({"head": "by-hand", "base": "main", "title": title})
    env.deliver("pull_request", env.pr_event("pull_request.opened", pull["number"]))
    return pull


def test_a_channel_mention_in_a_pr_title_pings_nobody(gate_env, tmp_path) -> None:
    _hand_made_pr(gate_env, tmp_path, "<!channel> <!here|here> urgent <http://evil.example|docs>")
    posts = [p for p in gate_env.slack.posts() if p["channel"] == "C_CHANGES"]
    assert len(posts) == 3  # the PR's thread root, the change request card, the gate in the thread
    for post in posts:
        shown = json.dumps(post)
        assert "<!channel>" not in shown and "<!here" not in shown and "<http://evil" not in shown
    assert all("&lt;!channel&gt;" in json.dumps(p) for p in posts if "Change gate" not in p["text"])  # shown as typed
    card = next(p for p in posts if "Change request" in p["text"])
    assert "<!subteam^S_CAB>" in json.dumps(card["blocks"])  # the approvers, and only they, are mentioned


def test_a_gate_card_is_retried_after_not_in_channel_and_then_works(gate_env) -> None:
    gate_env.slack.not_member_of.add("C_CHANGES")
    number = gate_env.promote("promote v0.4.0 to demo")
    head = gate_env.github.pulls[number]["head"]["sha"]
    gate_env.deliver("pull_request", gate_env.pr_event("pull_request.opened", number))
    assert any("not_in_channel" in t and "/invite @fluxbot" in t for t in gate_env.thread(number))  # the requester knows
    assert [p for p in gate_env.slack.posts() if p["channel"] == "C_CHANGES"] == []
    gate_env.slack.not_member_of.clear()  # someone invited fluxbot
    gate_env.transport.recover(now=gate_env.now[0] + 60)
    cards = [p for p in gate_env.slack.posts() if p["channel"] == "C_CHANGES" and "Change request" in p["text"]]
    assert len(cards) == 1
    assert gate_env.bot.store.gate("github", number)["request_ts"]  # the card is the gate's now
    gate_env.click("fluxbot_gate_approve", gate_env.request_buttons()["fluxbot_gate_approve"], "U_CAB")
    assert gate_env.github.gate_states(head) == ["pending", "success"]
    assert "Change approved" in gate_env.slack.of("chat.update")[-1].params["text"]  # the card says so


def test_new_commits_update_the_old_approval_card(gate_env, tmp_path) -> None:
    number = gate_env.promote("promote v0.4.0 to demo")
    gate_env.deliver("pull_request", gate_env.pr_event("pull_request.opened", number))
    old_card = [p for p in gate_env.slack.posts() if p["channel"] == "C_CHANGES"][-1]
    old_ts = gate_env.bot.store.gate("github", number)["request_ts"]
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", "-b", "fluxbot/promote-demo-v0.4.0", str(gate_env.github.bare_repo), str(work))
    (work / "clusters/demo/infrastructure.yaml").write_text(
        (work / "clusters/demo/infrastructure.yaml").read_text() + "# reviewed\n")
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "more")
    git(work, "push", "-q", "origin", "HEAD")
    gate_env.github.push_commit(number, git(work, "rev-parse", "HEAD"))
    gate_env.deliver("pull_request", gate_env.pr_event("pull_request.synchronize", number))
    update = next(c.params for c in gate_env.slack.of("chat.update") if c.params["ts"] == old_ts)
    assert "no longer applies" in update["text"]
    assert not [b for b in update["blocks"] if b["type"] == "actions"]  # its buttons are gone
    assert old_card["text"].startswith("! Change request")


def test_group_membership_is_retried_and_never_served_stale_forever(slack_standin) -> None:
    from slack_sdk import WebClient

    from bot.slack.transport import Directory

    now = [0.0]
    client = WebClient(token=SLACK_TOKEN, base_url=slack_standin.api_url)
    directory = Directory(client, ttl=300, max_stale=600, clock=lambda: now[0], pause=0)
    slack_standin.usergroups["S_SRE"] = ["U_BOB"]
    assert directory.members("S_SRE") == {"U_BOB"}
    slack_standin.fail("usergroups.users.list", "internal_error", times=1)  # one failure is retried at once
    now[0] = 301
    assert directory.members("S_SRE") == {"U_BOB"} and len(slack_standin.of("usergroups.users.list")) == 3
    slack_standin.fail("usergroups.users.list", "internal_error", times=100)  # Slack keeps failing
    now[0] = 700
    assert directory.members("S_SRE") == {"U_BOB"}  # stale, but within the bound
    now[0] = 301 + 300 + 601
    assert directory.members("S_SRE") == frozenset()  # too old to trust: nobody has the group's rights
    assert "S_SRE" in directory.failures
    slack_standin._failures.clear()
    slack_standin.usergroups["S_SRE"] = []  # Bob was removed from the group
    assert directory.members("S_SRE") == frozenset()


# -- the stand-in, held against slack_sdk's Block Kit models (which encode Slack's documented limits) ---

_TOO_MUCH = {
    "header over 150": {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}},
    "section over 3000": {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}},
    "11 fields": {"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 11},
    "11 context elements": {"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}] * 11},
    "26 buttons": {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "b"},
                                                    "action_id": f"a{n}"} for n in range(26)]},
}
# Stated in Slack's docs but not checked by slack_sdk's models: the stand-in refuses them too.
_ALSO_REFUSED = {
    "empty text": {"type": "section", "text": {"type": "mrkdwn", "text": ""}},  # text-object: min length 1
    "mrkdwn header": {"type": "header", "text": {"type": "mrkdwn", "text": "x"}},  # header-block: plain_text only
    "field over 2000": {"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]},  # section-block
    "button text over 75": {"type": "actions", "elements": [{"type": "button", "action_id": "a",
                                                             "text": {"type": "plain_text", "text": "b" * 76}}]},
}


@pytest.mark.parametrize("name", sorted(_TOO_MUCH) + sorted(_ALSO_REFUSED))
def test_the_stand_in_refuses_what_slack_refuses(name) -> None:
    from slack_sdk.errors import SlackObjectFormationError
    from slack_sdk.models.blocks import Block

    from tests.standins.slack import payload_problems

    block = {**_TOO_MUCH, **_ALSO_REFUSED}[name]
    if name in _TOO_MUCH:
        with pytest.raises(SlackObjectFormationError):
            Block.parse(block).validate_json()
    assert payload_problems({"channel": "C", "text": "x", "blocks": [block]})[0][0] == "invalid_blocks"
    many = [{"type": "divider"}] * 51
    assert payload_problems({"channel": "C", "text": "x", "blocks": many})[0][0] == "invalid_blocks"
    assert payload_problems({"channel": "C", "text": ""})[0][0] == "no_text"


def test_everything_fluxbot_renders_passes_slack_sdks_models() -> None:
    from slack_sdk.models.blocks import Block

    from bot.slack.blocks import confirm_buttons, to_pages
    from commands.model import Link, Message

    message = Message("Cluster `prod-eu` <@U1> & <!channel>", lines=tuple(f"line {n} <x>" for n in range(400)),
                      fields=tuple((f"f{n}", "v" * 2500) for n in range(23)), table=(("a", "b"),) + (("1", "2"),) * 3000,
                      links=(Link("PR #1", "https://example.com/1"), Link("local", "local://x")), context="c")
    for page in to_pages(message, confirm_buttons("cid", "\n".join(message.lines))):
        for block in page.blocks:
            Block.parse(block).validate_json()


def test_webhook_provider_expiry_updates_no_message_that_does_not_exist(github_standin, slack_standin, tmp_path,
                                                                         monkeypatch) -> None:
    from commands.gate import GatePolicy
    from tests.bot.test_gate import GateEnv
    from tests.standins.changes import ChangeSystem

    system = ChangeSystem()
    monkeypatch.setenv("CAB_TOKEN", system.token)
    env = GateEnv(github_standin, slack_standin, tmp_path / "state", monkeypatch, GatePolicy(provider="webhook"))
    try:
        env.gate.settings.webhook_url = system.url + "/changes"
        env.gate.settings.webhook_token_env = "CAB_TOKEN"
        number = env.promote("promote v0.4.0 to demo")
        env.deliver("pull_request", env.pr_event("pull_request.opened", number))
        env.now[0] += 25 * 3600
        env.gate.sweep()
        assert any("expired" in t for t in env.thread(number))
        assert [c.params for c in slack_standin.of("chat.update") if c.params.get("channel") == "webhook"] == []
    finally:
        env.stop()
        system.stop()


# -- Slack-native: the App Home tab ----------------------------------------------------------------

def test_the_home_tab_shows_the_fleet_and_what_waits_for_the_viewer(slack_app, slack_standin, example_repo) -> None:
    slack_standin.users.update(U_ALICE="alice")
    harness = slack_app(POLICY)
    harness.command("promote v0.4.0 to prod-eu")  # waits for Alice's confirmation
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")])
    harness.transport.bot.store.set_freeze("demo", "incident", "U_ALICE")
    body = json.loads(json.dumps(harness._event))
    body["event"] = {"type": "app_home_opened", "user": "U_ALICE", "channel": "D111", "tab": "home",
                     "event_ts": "1700000050.000100"}
    body["event_id"] = "Ev-home"
    assert harness.post(json.dumps(body), "application/json")[0] == 200
    view = slack_standin.wait_for(lambda: slack_standin.of("views.publish"))[0].params
    assert view["user_id"] == "U_ALICE"
    shown = json.dumps(view["view"]["blocks"])
    assert "prod-eu" in shown and "demo" in shown and "by @alice" in shown
    assert "Waiting for your confirmation: 1" in shown and "promote v0.4.0 to prod-eu" in shown
    assert slack_standin.of("views.publish")[0].taken


def test_reads_can_answer_only_the_asker(slack_app, slack_standin, example_repo) -> None:
    harness = slack_app(POLICY)
    harness.transport.settings.ephemeral_reads = True  # `slack.ephemeral_reads: true`
    harness.command("versions")
    private = slack_standin.wait_for(lambda: slack_standin.of("chat.postEphemeral"))[0].params
    assert private["user"] == "U_ALICE" and private["channel"] == "C_OPS" and "4 releases" in private["text"]
    assert slack_standin.posts() == []  # no "asked" post, no thread
    harness.command("rollback demo")  # a write is still answered in a thread everyone sees
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])


def test_promote_or_rollback_without_arguments_opens_a_modal_whose_answer_runs(slack_app, slack_standin,
                                                                               example_repo) -> None:
    from urllib.parse import quote

    harness = slack_app(POLICY)
    harness.command("rollback", trigger_id="trigger.modal")
    opened = slack_standin.wait_for(lambda: slack_standin.of("views.open"))[0]
    assert opened.taken and opened.params["trigger_id"] == "trigger.modal"
    view = opened.params["view"]
    clusters = [o["value"] for b in view["blocks"] if b["block_id"] == "cluster" for o in b["element"]["options"]]
    assert clusters == ["demo", "prod-eu"]  # only clusters pinned to a tag can be rolled back
    submission = {"type": "view_submission", "team": {"id": "T111"}, "user": {"id": "U_ALICE"}, "api_app_id": "A111",
                  "token": "verification_token", "trigger_id": "t2",
                  "view": {**view, "id": "V222", "hash": "h1", "state": {"values": {
                      "cluster": {"value": {"type": "static_select", "selected_option": {"value": "demo"}}},
                      "version": {"value": {"type": "static_select", "selected_option": None}},
                      "reason": {"value": {"type": "plain_text_input", "value": "pager <b> & x"}}}}}}
    assert harness.post(f"payload={quote(json.dumps(submission))}", "application/x-www-form-urlencoded")[0] == 200
    slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])
    assert branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]
    assert harness.transport.bot.store.audit_log()[0]["command"] == "rollback demo because pager <b> & x"


def test_an_expired_confirmation_offers_what_works_in_a_thread(slack_app, slack_standin, example_repo) -> None:
    """Slash commands cannot be used in threads: the expired card offers a button and the mention instead."""
    now = [1000.0]
    harness = slack_app(POLICY, ttl=60, clock=lambda: now[0])
    harness.command("promote v0.4.0 to prod-eu")
    ask = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")])[0]
    now[0] += 61
    harness.click("fluxbot_confirm", button(ask, "fluxbot_confirm")["value"], user="U_ALICE", thread_ts=ask["thread_ts"])
    expired = slack_standin.wait_for(lambda: slack_standin.of("chat.update"))[0].params
    assert "/flux" not in expired["text"] and "@fluxbot promote v0.4.0 to prod-eu" in expired["text"]
    again = button(expired, "fluxbot_retry")
    assert again["value"] == "promote v0.4.0 to prod-eu"
    harness.click("fluxbot_retry", again["value"], user="U_ALICE", thread_ts=ask["thread_ts"])
    asks = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if p["text"].startswith("! Confirm")][1:])
    assert asks[0]["thread_ts"] == ask["thread_ts"] and branches(example_repo) == []


def test_a_global_shortcut_opens_the_modal_and_asks_where_to_answer(slack_app, slack_standin, example_repo) -> None:
    from urllib.parse import quote

    harness = slack_app(POLICY)
    shortcut = {"type": "shortcut", "callback_id": "fluxbot_rollback", "trigger_id": "trigger.sc", "team": {"id": "T111"},
                "user": {"id": "U_ALICE"}, "api_app_id": "A111", "token": "verification_token", "action_ts": "1.1"}
    assert harness.post(f"payload={quote(json.dumps(shortcut))}", "application/x-www-form-urlencoded")[0] == 200
    view = slack_standin.wait_for(lambda: slack_standin.of("views.open"))[0].params["view"]
    assert "channel" in [b["block_id"] for b in view["blocks"]]
    submission = {"type": "view_submission", "team": {"id": "T111"}, "user": {"id": "U_ALICE"}, "api_app_id": "A111",
                  "token": "verification_token", "trigger_id": "t4",
                  "view": {**view, "id": "V333", "hash": "h2", "state": {"values": {
                      "cluster": {"value": {"type": "static_select", "selected_option": {"value": "demo"}}},
                      "channel": {"value": {"type": "conversations_select", "selected_conversation": "C_OPS"}}}}}}
    assert harness.post(f"payload={quote(json.dumps(submission))}", "application/x-www-form-urlencoded")[0] == 200
    opened = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "Opened: PR #1" in p["text"]])[0]
    assert opened["channel"] == "C_OPS" and branches(example_repo) == ["fluxbot/rollback-demo-v0.3.0"]


def test_a_refusal_says_when_slack_could_not_list_a_group(slack_app, slack_standin, example_repo) -> None:
    slack_standin.group_handles.update(S_SRE="sre-oncall")
    harness = slack_app(POLICY)
    harness.transport.directory._pause = 0
    slack_standin.fail("usergroups.users.list", "internal_error", times=3)  # every retry fails
    harness.command("rollback demo", user="U_BOB")
    refusal = slack_standin.wait_for(lambda: [p for p in slack_standin.posts() if "may not run" in p["text"]])[0]
    assert "Slack could not be asked who is in @sre-oncall just now" in refusal["text"]
    assert len(slack_standin.of("usergroups.users.list")) == 3  # retried, not dropped at the first failure


@pytest.mark.parametrize("untrusted", [
    "podinfo: InstallFailed: template: podinfo/templates/deployment.yaml:12: at <.Values.x>: nil pointer",  # Helm
    "<!channel> fix it",  # a PR title
    "<@U_ALICE> & <!subteam^S_SRE|@sre> <https://evil.example|innocent>",  # a reason with pasted markup
])
def test_untrusted_text_is_shown_as_typed_and_pings_nobody(untrusted) -> None:
    from bot.slack.blocks import to_pages
    from commands.model import Message

    (page,) = to_pages(Message(f"Reconcile of demo failed: {untrusted}", lines=(untrusted,),
                               fields=(("Reason", untrusted),), table=(("message",), (untrusted,)), context=untrusted))
    everything = json.dumps(page.blocks) + page.text
    assert "<!" not in everything and "<http" not in everything and "<.Values" not in everything
    assert any("&lt;" in b["text"]["text"] for b in page.blocks if b["type"] == "section" and "text" in b)


def test_every_listener_acks_on_the_request_thread_and_looks_names_up_after_the_ack(slack_app, slack_standin) -> None:
    """Bolt runs a listener on its own executor and polls for the ack every 10 ms unless it processes
    before responding; fluxbot's listeners only ack and hand over, so none may reach that executor,
    and Slack lookups (a user's name in the text) happen on fluxbot's work threads, after the ack."""
    import threading

    harness = slack_app(POLICY)
    runner = harness.transport.app.listener_runner
    handed: list[str] = []
    executor = runner.listener_executor

    class Counting:
        def submit(self, fn, *args, **kwargs):
            handed.append(getattr(fn, "__name__", "?"))
            return executor.submit(fn, *args, **kwargs)

    runner.listener_executor = Counting()
    directory, looked_up = harness.transport.directory, []
    user_name = directory.user

    def recording(user_id: str) -> str:
        looked_up.append(threading.current_thread().name)
        return user_name(user_id)

    directory.user = recording
    assert harness.command("versions <@U_BOB>")[0] == 200
    assert harness.mention("versions", event_id="Ev21", ts="1700000021.000100")[0] == 200
    assert harness.click("fluxbot_cancel", "nothing-to-cancel", "U_ALICE")[0] == 200
    slack_standin.wait_for(lambda: len([p for p in slack_standin.posts() if p.get("thread_ts")]) >= 2)
    assert handed == []
    assert looked_up and all(name.startswith("fluxbot-work") for name in looked_up), looked_up


def test_a_status_with_a_null_description_is_still_posted(gate_env) -> None:
    """GitHub sends `description: null` for a status created without one (octokit/webhooks' status
    schema: string | null); the notice still reaches the thread, without an empty text object."""
    number = gate_env.promote("promote v0.4.0 to demo")
    head = gate_env.github.pulls[number]["head"]["sha"]
    status = json.loads(shared_file("fixtures/payloads/github/status.json").read_text())
    status.update(sha=head, state="failure", description=None, context="ci/build", id=4242)
    status["repository"]["full_name"] = gate_env.github.full_name  # events of other repositories are ignored
    gate_env.deliver("status", status)
    gate_env.webhook.drain()
    notice = gate_env.slack.wait_for(lambda: [t for t in gate_env.thread(number) if "Status `ci/build` failure" in t])
    assert notice
