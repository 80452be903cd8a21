"""The GitHub forge against the REST stand-in: real PyGithub, real pushes, every failure clean."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from tests.conftest import GITHUB_TOKEN, git, say

BRANCH = "fluxbot/promote-demo-v0.4.0"



def test_promote_opens_one_labelled_pr_and_a_repeat_returns_it(github_bot, github_standin) -> None:
    bot = github_bot(reviewers_team="platform-admins")
    out = say(bot, "promote v0.4.0 to demo")
    assert "Opened: PR #1 Promote demo to v0.4.0" in out
    assert "https://github.example/platform/flux-demo/pull/1" in out
    (pr,) = github_standin.open_pulls()
    assert pr["head"]["ref"] == BRANCH and pr["base"]["ref"] == "main"
    assert [l["name"] for l in pr["labels"]] == ["fluxbot", "promotion", "cluster:demo", "productive"]
    assert "`v0.3.0` -> `v0.4.0`" in pr["body"] and "Requested by: alice" in pr["body"]
    assert "Added indirection layer to support dependencies between components." in pr["body"]
    assert github_standin.reviewers[1] == ["platform-admins"]
    # the pushed branch is a one-line change on main
    diff = git(github_standin.bare_repo, "diff", f"main...{BRANCH}").splitlines()
    assert [l for l in diff if l[:1] in "+-" and l[:3] not in ("+++", "---")] == ["-    tag: v0.3.0", "+    tag: v0.4.0"]

    again = say(bot, "promote v0.4.0 to demo", "bob")
    assert again.startswith("• this change is already open: PR #1")
    assert len(github_standin.pulls) == 1
    assert "already has an open change: PR #1" in say(bot, "rollback demo")


def test_prs_and_status_read_open_prs_from_github(github_bot, github_standin) -> None:
    bot = github_bot()
    say(bot, "promote v0.4.0 to demo")
    listing = say(github_bot(), "prs")  # a fresh process knows only what GitHub says
    assert "1  demo     promotion  Promote demo to v0.4.0  alice" in listing
    assert "#1" in say(bot, "status")


def test_merge_and_close_through_github(github_bot, github_standin) -> None:
    bot = github_bot()
    say(bot, "promote v0.4.0 to demo")
    assert "Merged PR #1" in say(bot, "pr merge 1")
    assert github_standin.pulls[1]["merged"] is True
    assert "tag: v0.4.0" in git(github_standin.bare_repo, "show", "main:clusters/demo/infrastructure.yaml")
    assert "demo     v0.4.0" in say(bot, "status")
    say(bot, "rollback demo")
    assert "Closed PR #2" in say(bot, "pr close 2")
    assert github_standin.fluxbot_branches() == [BRANCH]  # GitHub kept the merged branch; the closed one is gone


@pytest.mark.parametrize(
    "method, route, status, message, headers, says",
    [
        ("POST", r"/pulls$", 403, "Resource not accessible by integration", {},
         "needs `contents: write` and `pull_requests: write`"),
        ("POST", r"/pulls$", 422, "Validation Failed", {}, "422 Validation Failed"),
        ("POST", r"/pulls$", 403, "API rate limit exceeded",
         {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 600)}, "it resets at"),
        ("POST", r"/labels$", 403, "Resource not accessible by integration", {}, "`issues: write`"),
    ],
)
def test_a_failure_after_the_push_leaves_no_branch_and_no_pr(
    github_bot, github_standin, method, route, status, message, headers, says
) -> None:
    bot = github_bot()
    github_standin.fail(method, route, status, message, headers)
    out = say(bot, "promote v0.4.0 to demo")
    # a rate limit passes: that request is kept for a retry; the others are refusals to act on
    assert out.startswith("!" if status == 403 and headers else "✗") and says in out, out
    assert "nothing was changed" in out
    assert github_standin.fluxbot_branches() == []
    assert github_standin.open_pulls() == []
    # and the next attempt works
    assert "Opened: PR #" in say(bot, "promote v0.4.0 to demo")


@pytest.mark.parametrize(
    "route, status, says",
    [
        (r"/pulls$", 401, "401 Bad credentials"),
        (r"/flux-demo$", 404, "GitHub has no repository platform/flux-demo"),
    ],
)
def test_failures_before_anything_is_written(github_bot, github_standin, route, status, says) -> None:
    bot = github_bot()
    github_standin.fail("GET", route, status, "Bad credentials" if status == 401 else "Not Found", times=5)
    out = say(bot, "promote v0.4.0 to demo")
    assert says in out, out
    assert github_standin.fluxbot_branches() == [] and github_standin.pulls == {}


def test_a_wrong_token_is_a_clear_401(github_bot, github_standin, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong_token_abcdefghij")
    out = say(github_bot(), "prs")
    assert "401 Bad credentials" in out and "ghp_wrong_token" not in out


def test_github_unreachable(github_bot, github_standin) -> None:
    bot = github_bot()
    github_standin.stop()
    out = say(bot, "promote v0.4.0 to demo")
    assert "GitHub is unreachable at http://127.0.0.1:" in out
    assert github_standin.fluxbot_branches() == []


def someone_pushes_first(bot, github_standin, work: Path, path: str, edit, message: str) -> None:
    """Make the bot's next push race a commit someone else lands on main between plan and push."""
    original = bot.workspace.push_change

    def pushed_meanwhile(plan):
        git(work.parent, "clone", "-q", str(github_standin.bare_repo), str(work))
        target = work / path
        target.write_text(edit(target.read_text()))
        git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", message)
        git(work, "push", "-q", "origin", "main")
        return original(plan)

    bot.workspace.push_change = pushed_meanwhile


def test_a_push_race_rebuilds_the_change_on_the_new_main(github_bot, github_standin, tmp_path) -> None:
    bot = github_bot()
    someone_pushes_first(bot, github_standin, tmp_path / "someone", "README.md", lambda _: "changed meanwhile\n",
                         "docs: meanwhile")
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    main = git(github_standin.bare_repo, "rev-parse", "main")
    assert git(github_standin.bare_repo, "rev-parse", f"{BRANCH}^") == main


def test_a_real_conflict_is_reported_not_forced(github_bot, github_standin, tmp_path) -> None:
    bot = github_bot()
    someone_pushes_first(bot, github_standin, tmp_path / "someone", "clusters/demo/infrastructure.yaml",
                         lambda text: text.replace("tag: v0.3.0", "tag: v0.2.0"), "hotfix")
    out = say(bot, "promote v0.4.0 to demo")
    assert "to `v0.2.0` meanwhile" in out
    assert github_standin.fluxbot_branches() == [] and github_standin.pulls == {}


def test_enterprise_base_url_with_api_v3(github_bot, github_standin) -> None:
    github_standin.api_prefix = "/api/v3"
    bot = github_bot(base_url=github_standin.base_url + "/api/v3")
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    assert github_standin.open_pulls()[0]["url"].startswith(github_standin.base_url + "/api/v3/repos/")


def _app_bot(github_bot, tmp_path, monkeypatch):
    """A bot authenticated as GitHub App 4242, installation 77 (a fresh RSA key), no token."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "app.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    monkeypatch.delenv("GITHUB_TOKEN")
    return github_bot(app_id="4242", app_private_key_file=str(pem), app_installation_id=77)


def test_github_app_installation_token(github_bot, github_standin, tmp_path, monkeypatch) -> None:
    bot = _app_bot(github_bot, tmp_path, monkeypatch)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    token_calls = [r for r in github_standin.requests if r.path == "/app/installations/77/access_tokens"]
    assert token_calls and token_calls[0].headers["authorization"].startswith("Bearer ")
    api_calls = [r for r in github_standin.requests if r.path.startswith("/repos/")]
    assert api_calls and all(r.headers["authorization"] == "token ghs_installation_1" for r in api_calls)


def test_every_request_carries_the_token_and_it_never_leaks(github_bot, github_standin, caplog, tmp_path) -> None:
    caplog.set_level(logging.DEBUG)
    bot = github_bot()
    replies = [say(bot, t) for t in ("promote v0.4.0 to demo", "prs", "status demo", "pr merge 1", "promote v9 to demo")]
    github_standin.fail("POST", r"/pulls$", 403, "Resource not accessible by integration")
    replies.append(say(bot, "rollback demo"))
    assert all(r.headers.get("authorization") == f"token {GITHUB_TOKEN}" for r in github_standin.requests)
    bodies = [p["body"] for p in github_standin.pulls.values()]
    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    mirror_config = (tmp_path / "github-state" / "cache" / "mirror.git" / "config").read_text()
    audit = "\n".join(str(dict(r)) for r in bot.store.audit_log(50))
    for text in replies + bodies + [logged, mirror_config, audit]:
        assert GITHUB_TOKEN not in text


# -- issue #14: permissions from the real diff, rate limits, merging, lost answers, wasted calls ----

def hand_made_branch(github_standin, tmp_path: Path, branch: str, path: str) -> None:
    """Someone pushes `branch` changing `path` (a productive cluster's file) and opens a PR by hand."""
    work = tmp_path / "hand"
    git(tmp_path, "clone", "-q", str(github_standin.bare_repo), str(work))
    git(work, "checkout", "-q", "-b", branch)
    (work / path).write_text((work / path).read_text() + "# by hand\n")
    git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "by hand")
    git(work, "push", "-q", "origin", "HEAD")
    github_standin.open_pull_by_hand(branch, "harmless test change", "mallory")


def test_pr_merge_permission_covers_every_cluster_the_diff_touches(github_bot, github_standin, tmp_path) -> None:
    from commands.permissions import Policy, Rule

    hand_made_branch(github_standin, tmp_path, "fluxbot/promote-test-v9.9.9", "clusters/demo/infrastructure.yaml")
    github_standin.label(1, "fluxbot", "mallory")
    github_standin.label(1, "cluster:test", "mallory")  # a label says `test`; the diff changes demo
    bot = github_bot()
    bot.policy = Policy(rules=(Rule(actions=("merge",), users=("bob",), clusters=("test",)),))
    out = say(bot, "pr merge 1", "bob")
    assert "may not" in out and "demo" in out, out
    assert github_standin.pulls[1]["merged"] is False


@pytest.mark.parametrize("status, message, headers", [
    (429, "Too Many Requests", {"retry-after": "900"}),
    (403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
     {"retry-after": "900"}),
])
def test_a_rate_limit_honours_retry_after_and_the_request_waits(github_bot, github_standin, status, message,
                                                                headers) -> None:
    bot = github_bot()
    github_standin.fail("POST", r"/pulls$", status, message, headers)
    out = say(bot, "promote v0.4.0 to demo")
    assert out.startswith("!") and "wait 900 s" in out, out
    (row,) = bot.store.query("SELECT next_try, state FROM requests ORDER BY id DESC LIMIT 1")
    assert row["state"] == "running" and row["next_try"] >= time.time() + 800
    assert github_standin.fluxbot_branches() == [] and github_standin.pulls == {}


def test_merge_uses_a_method_the_repository_allows_and_the_head_it_showed(github_bot, github_standin) -> None:
    github_standin.merge_methods = {"squash"}
    bot = github_bot()
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    head = github_standin.pulls[1]["head"]["sha"]
    assert "Merged PR #1" in say(bot, "pr merge 1")
    (put,) = [r for r in github_standin.requests if r.method == "PUT"]
    assert put.body["merge_method"] == "squash" and put.body["sha"] == head


@pytest.mark.parametrize("status, message, says", [
    (405, "Merge commits are not allowed on this repository.", "merge method is not allowed"),
    (405, "Changes must be made through the merge queue", "merge queue"),
    (409, "Head branch was modified. Review and try the merge again.", "new commits since it was shown"),
    (422, "Validation Failed", "422 Validation Failed"),
])
def test_merge_refusals_are_explained(github_bot, github_standin, status, message, says) -> None:
    bot = github_bot()
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    github_standin.fail("PUT", r"/merge$", status, message)
    out = say(bot, "pr merge 1")
    assert out.startswith("✗") and says in out, out
    assert github_standin.pulls[1]["merged"] is False


def test_a_lost_create_answer_finds_the_pr_before_deleting_anything(github_bot, github_standin) -> None:
    from tests.standins.github import DROP

    bot = github_bot()
    github_standin.fail("POST", r"/pulls$", DROP)  # GitHub opens the PR, the answer never arrives
    out = say(bot, "promote v0.4.0 to demo")
    assert "Opened: PR #1" in out, out
    assert github_standin.fluxbot_branches() == [BRANCH]
    assert [l["name"] for l in github_standin.pulls[1]["labels"]] == ["fluxbot", "promotion", "cluster:demo", "productive"]


def test_no_wasted_calls(github_bot, github_standin) -> None:
    bot = github_bot()
    say(bot, "promote v0.4.0 to demo")
    say(bot, "rollback demo")  # refused: demo has an open change
    github_standin.requests.clear()
    say(bot, "help")
    assert github_standin.requests == []  # a command that needs no PR asks GitHub nothing
    say(bot, "prs")
    gets = [r.path for r in github_standin.requests if r.method == "GET"]
    assert gets.count("/repos/platform/flux-demo/pulls") == 1 and "/repos/platform/flux-demo/pulls/1" not in gets
    github_standin.requests.clear()
    bot.forge.set_status(github_standin.pulls[1]["head"]["sha"], "pending", "x", "fluxbot/change-gate")
    assert [(r.method, r.path.split("/")[-2]) for r in github_standin.requests] == [("POST", "statuses")]


@pytest.mark.parametrize("base_url, expected", [
    ("https://api.github.com", "https://github.com/o/r.git"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com/o/r.git"),
    ("https://api.octocorp.ghe.com", "https://octocorp.ghe.com/o/r.git"),
])
def test_clone_url_for_each_kind_of_github(base_url, expected) -> None:
    from bot.github.forge import git_url_for

    assert git_url_for(base_url, "o/r") == expected


def test_as_a_github_app_the_gate_is_a_check_run_that_protection_can_require(github_bot, github_standin, tmp_path,
                                                                            monkeypatch) -> None:
    from bot.github import checks
    from tests.standins.github import Protection

    bot = _app_bot(github_bot, tmp_path, monkeypatch)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to demo")
    head = github_standin.pulls[1]["head"]["sha"]
    github_standin.protection = Protection(checks_from_app_only=True)
    checks.report(bot.forge, head, "pending", "awaiting change approval")
    assert github_standin.check_states(head) == ["in_progress"] and github_standin.gate_states(head) == []
    # anyone with push access can post a status of that name; it does not satisfy the protection
    github_standin.post_status(head, "success", "fluxbot/change-gate", "mallory")
    assert github_standin.merge_on_page(1, by="mallory")[0] == 405
    checks.report(bot.forge, head, "success", "change approved by U_CAB")
    assert github_standin.check_states(head) == ["in_progress", "success"]
    assert github_standin.merge_on_page(1, by="carol")[0] == 200
