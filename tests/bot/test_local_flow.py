"""The embedded local forge end to end: PR records, merge, close, restarts, failures, audit."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.forge.base import ForgeError
from commands.context import Context
from commands.registry import plan
from tests.conftest import branches, git, say



def test_example_repo_layout(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    out = say(bot, "status")
    assert "3 clusters · latest release v0.4.0" in out
    assert "prod-eu  v0.3.0       yes         1" in out
    assert "rollback prod-eu" not in out
    assert "Roll back prod-eu to v0.2.0" in say(bot, "rollback prod-eu")


def test_merge_updates_main_and_the_checked_out_work_tree(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    assert "Opened: PR #1" in say(bot, "promote v0.4.0 to prod-eu")
    assert "Merged PR #1" in say(bot, "pr merge 1", "bob")
    assert branches(example_repo) == []
    assert git(example_repo, "status", "--porcelain") == ""
    assert "tag: v0.4.0" in (example_repo / "clusters/prod-eu/infrastructure.yaml").read_text()
    log = git(example_repo, "log", "-2", "--format=%s")
    assert log.splitlines() == ["Merge fluxbot PR #1: Promote prod-eu to v0.4.0", "chore(prod-eu): promote infrastructure to v0.4.0"]
    assert "prod-eu  v0.4.0       yes         0" in say(bot, "status")
    # and now the previous pin is v0.3.0
    assert "Roll back prod-eu to v0.3.0" in say(bot, "rollback prod-eu")


def test_merge_refuses_to_overwrite_local_changes(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    say(bot, "promote v0.4.0 to prod-eu")
    infra = example_repo / "clusters/prod-eu/infrastructure.yaml"
    infra.write_text(infra.read_text() + "# my local edit\n")
    out = say(bot, "pr merge 1")
    assert out.startswith("✗ cannot update main")
    assert infra.read_text().endswith("# my local edit\n")  # nothing of the user's is lost
    assert "1  prod-eu" in say(bot, "prs")  # the PR is still open


def test_state_survives_a_restart(example_repo: Path, make_bot) -> None:
    say(make_bot(example_repo), "promote v0.4.0 to prod-eu")
    again = make_bot(example_repo)
    assert "1  prod-eu  promotion  Promote prod-eu to v0.4.0  alice" in say(again, "prs")
    assert say(again, "promote v0.4.0 to prod-eu", "bob").startswith("• this change is already open: PR #1")
    assert "already has an open change: PR #1" in say(again, "rollback prod-eu", "bob")


def test_a_failed_pr_creation_deletes_the_pushed_branch(example_repo: Path, make_bot, monkeypatch) -> None:
    bot = make_bot(example_repo)

    def refuse(*args, **kwargs):
        raise ForgeError("the forge refused the pull request (422 validation failed)")

    monkeypatch.setattr(bot.forge, "create", refuse)
    out = say(bot, "promote v0.4.0 to prod-eu")
    assert "422 validation failed" in out and "nothing was changed" in out
    assert branches(example_repo) == []
    assert bot.forge.open_prs() == []


def test_an_unexpected_error_is_an_incident_not_a_traceback(example_repo: Path, make_bot, monkeypatch) -> None:
    bot = make_bot(example_repo)
    monkeypatch.setattr(bot.workspace, "push_change", lambda *a: 1 / 0)
    out = say(bot, "promote v0.4.0 to prod-eu")
    assert "internal error (incident " in out and "Traceback" not in out
    assert branches(example_repo) == []
    row = bot.store.audit_log(1)[0]
    assert row["outcome"] == "error" and row["command"] == "promote v0.4.0 to prod-eu"


def test_the_database_itself_holds_one_open_change_per_cluster(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    say(bot, "promote v0.4.0 to prod-eu")
    snapshot = bot.snapshot()
    # A second planner racing the first (it did not see PR #1) is stopped by the store.
    (racing,) = plan("promote v0.4.0 to prod-eu", Context(snapshot, "bob", ()))
    with pytest.raises(ForgeError):
        bot.forge.create(racing, "0" * 40, "bob")


def test_repeated_request_for_the_same_change_returns_the_open_pr(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    say(bot, "promote v0.4.0 to prod-eu")
    # A retry planned before PR #1 became visible reaches the service with the same branch.
    (retry,) = plan("promote v0.4.0 to prod-eu", Context(bot.snapshot(), "bob"))
    _pr, message = bot.open_change(retry, "bob")
    assert message.title.startswith("This change is already open: PR #1")
    assert len(bot.forge.open_prs()) == 1


def test_a_bare_origin_works_like_a_server(example_repo: Path, make_bot, tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(example_repo), str(bare))
    bot = make_bot(bare)
    say(bot, "promote v0.4.0 to prod-eu")
    assert git(bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/fluxbot") == "fluxbot/promote-prod-eu-v0.4.0"
    say(bot, "pr merge 1")
    assert "tag: v0.4.0" in git(bare, "show", "main:clusters/prod-eu/infrastructure.yaml")


def test_audit_log_records_every_request(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    say(bot, "status")
    say(bot, "promote v0.4.0 to nope", "mallory")
    say(bot, "blah")
    rows = [(r["user"], r["command"], r["outcome"]) for r in reversed(bot.store.audit_log(3))]
    assert rows == [
        ("alice", "status", "ok"),
        ("mallory", "promote v0.4.0 to nope", "refused"),
        ("alice", "blah", "refused"),
    ]


def test_the_users_repo_is_never_written_by_reads(example_repo: Path, make_bot) -> None:
    before = git(example_repo, "for-each-ref")
    bot = make_bot(example_repo)
    for text in ("status", "versions", "diff v0.1.0 v0.4.0", "status demo", "prs", "help promote"):
        assert not say(bot, text).startswith("✗"), text
    assert git(example_repo, "for-each-ref") == before
    assert git(example_repo, "status", "--porcelain") == ""


def _commit(repo: Path, path: str, text: str, message: str) -> None:
    (repo / path).write_text(text)
    git(repo, "-c", "user.name=someone", "-c", "user.email=s@example.com", "commit", "-qam", message)


def test_main_moved_meanwhile_the_change_is_rebuilt_on_the_new_main(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    (planned,) = plan("promote v0.4.0 to prod-eu", Context(bot.snapshot(), "alice"))
    infra = "clusters/prod-eu/infrastructure.yaml"
    _commit(example_repo, infra, "# owned by team eu\n" + (example_repo / infra).read_text(), "docs: owner")
    _pr, message = bot.open_change(planned, "alice")
    assert message.title.startswith("Opened: PR #1")
    branch = "fluxbot/promote-prod-eu-v0.4.0"
    assert git(example_repo, "rev-parse", f"{branch}^") == git(example_repo, "rev-parse", "main")
    diff = git(example_repo, "diff", f"main...{branch}").splitlines()
    assert [l for l in diff if l[:1] in "+-" and l[:3] not in ("+++", "---")] == ["-    tag: v0.3.0", "+    tag: v0.4.0"]


def test_main_changed_the_same_value_meanwhile_is_a_reported_conflict(example_repo: Path, make_bot) -> None:
    bot = make_bot(example_repo)
    (planned,) = plan("promote v0.4.0 to prod-eu", Context(bot.snapshot(), "alice"))
    infra = "clusters/prod-eu/infrastructure.yaml"
    _commit(example_repo, infra, (example_repo / infra).read_text().replace("v0.3.0", "v0.2.0"), "hotfix by hand")
    from commands.model import CommandError

    with pytest.raises(CommandError, match="to `v0.2.0` meanwhile"):
        bot.open_change(planned, "alice")
    assert branches(example_repo) == []
    assert bot.forge.open_prs() == []


def test_concurrent_requests_read_the_repo_safely(example_repo: Path, make_bot) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bot = make_bot(example_repo)
    texts = ["status", "versions", "diff v0.1.0 v0.4.0", "status prod-eu"] * 6
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda t: say(bot, t), texts))
    assert not [r for r in replies if r.startswith("✗")]
    assert all("3 clusters" in r for r, t in zip(replies, texts) if t == "status")
