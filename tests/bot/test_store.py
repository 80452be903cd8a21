"""The store: the journal's retry schedule, a state file from an older fluxbot, and several replicas
sharing one database (on SQLite and on PostgreSQL)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.store import IntegrityError, Store
from tests.conftest import together


def test_retries_back_off_doubling_up_to_ten_minutes(store_url: str) -> None:
    store = Store(store_url)
    request = store.begin_request("U1", "promote v0.4.0 to demo", "C1", "1.1", [], False, started=1000.0)
    assert store.unanswered_requests(now=1100.0) == ([], [])  # still in flight: left alone
    now, waits = 1120.0, []
    for _ in range(7):
        due, abandoned = store.unanswered_requests(now=now)
        assert [row["id"] for row in due] == [request] and abandoned == []
        next_try = store.query("SELECT next_try FROM requests")[0]["next_try"]
        waits.append(next_try - now)
        assert store.unanswered_requests(now=next_try - 1) == ([], [])  # not before it is due
        now = next_try
    assert waits == [30, 60, 120, 240, 480, 600, 600]


def test_at_start_everything_unanswered_is_due_and_the_last_attempt_gives_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "fluxbot.db")  # one process: nothing of an earlier one can still be running
    first = store.begin_request("U1", "rollback demo", "C1", "1.1", [], False, started=1000.0)
    due, _ = store.unanswered_requests(now=0.0, everything=True)
    assert [row["id"] for row in due] == [first]
    store.finish_request(first)
    assert store.unanswered_requests(now=0.0, everything=True) == ([], [])
    second = store.begin_request("U1", "rollback demo", "C1", "1.2", [], False, started=1000.0)
    for _ in range(2):
        store.unanswered_requests(now=0.0, everything=True, max_attempts=2)
    due, abandoned = store.unanswered_requests(now=0.0, everything=True, max_attempts=2)
    assert due == [] and [row["id"] for row in abandoned] == [second]
    store.finish_request(second)  # a late answer does not revive a request given up on
    assert store.query("SELECT state FROM requests WHERE id = ?", second)[0]["state"] == "abandoned"


def test_a_state_file_from_an_older_fluxbot_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "fluxbot.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, text TEXT NOT NULL,"
                   " channel TEXT NOT NULL, thread_ts TEXT NOT NULL, groups TEXT NOT NULL, confirmed INTEGER NOT NULL,"
                   " state TEXT NOT NULL, created TEXT NOT NULL)")
        db.execute("INSERT INTO requests (user, text, channel, thread_ts, groups, confirmed, state, created)"
                   " VALUES ('U1', 'status', 'C1', '1.1', '[]', 0, 'running', '2026-11-24T10:00:00+00:00')")
    store = Store(path)
    due, _ = store.unanswered_requests(now=0.0, everything=True)
    assert [(row["text"], row["attempts"], row["notified"]) for row in due] == [("status", 0, 0)]


# -- several replicas on one database (#19); each test runs on SQLite and on PostgreSQL --------------


@pytest.fixture
def replicas(store_url: str):
    """Three stores on one database, as three fluxbot replicas would hold them."""
    stores = [Store(store_url) for _ in range(3)]
    for i, store in enumerate(stores):
        store.owner = f"replica-{i}"
    yield stores
    for store in stores:
        store.close()


def test_a_delivery_is_new_work_for_exactly_one_replica(replicas) -> None:
    firsts = together(9, lambda i: replicas[i % 3].first_delivery("slack", "Ev0123"))
    assert firsts.count(True) == 1


def test_each_due_request_is_claimed_by_one_replica_and_a_running_lease_by_none(replicas) -> None:
    ids = [replicas[0].begin_request("U1", f"status {n}", "C1", f"1.{n}", [], False, started=0.0) for n in range(12)]
    if replicas[0].shared:  # replicas: a start claims only expired leases (SQLite's one process claims all)
        assert replicas[2].unanswered_requests(now=60.0, everything=True) == ([], [])
    claims = together(6, lambda i: [row["id"] for row in replicas[i % 3].unanswered_requests(now=121.0)[0]])
    claimed = [i for claim in claims for i in claim]
    assert sorted(claimed) == ids  # all of them, none twice
    owners = {row["owner"] for row in replicas[0].query("SELECT owner FROM requests")}
    assert owners <= {"replica-0", "replica-1", "replica-2"}
    assert replicas[1].unanswered_requests(now=140.0) == ([], [])  # their new leases run


def test_a_dead_replicas_request_is_taken_over_once_its_lease_runs_out(replicas) -> None:
    dead, heir, other = replicas
    request = dead.begin_request("U1", "rollback demo", "C1", "1.1", [], False, started=1000.0, in_flight=120.0)
    if heir.shared:
        assert heir.unanswered_requests(now=1100.0, everything=True) == ([], [])  # even at its start
    dead.extend_lease(request, 1300.0)  # a heartbeat while it works on it
    assert heir.unanswered_requests(now=1200.0) == ([], [])
    (row,), _ = heir.unanswered_requests(now=1301.0)  # no heartbeat since: it died
    assert row["id"] == request
    assert other.unanswered_requests(now=1302.0) == ([], [])  # the heir holds it now
    assert heir.query("SELECT owner FROM requests WHERE id = ?", request)[0]["owner"] == "replica-1"


def test_a_confirmation_is_settled_once_whoever_clicks_where(replicas) -> None:
    replicas[0].add_confirmation("c1", "U1", "C1", "1.1", "promote v1 to prod", created=0.0, ttl=600)
    outcomes = together(6, lambda i: replicas[i % 3].settle_confirmation("c1", "U1", 10.0, "confirmed")[0])
    assert sorted(outcomes) == ["ok"] + ["settled"] * 5


def test_one_open_change_per_cluster_holds_across_replicas(replicas) -> None:
    def open_pr(i: int) -> str:
        try:
            with replicas[i % 3].transaction() as db:
                db.insert("INSERT INTO local_prs (title, body, state, author, cluster, kind, branch, head, labels,"
                          " created, updated) VALUES ('t', 'b', 'open', 'a', 'prod-eu', 'promote', ?, 'h', '[]', 'c', 'u')",
                          (f"fluxbot/{i}",), key="number")
            return "opened"
        except IntegrityError:
            return "refused"

    assert sorted(together(6, open_pr)) == ["opened"] + ["refused"] * 5


def test_one_leader_at_a_time_and_a_new_one_gets_a_higher_token(replicas) -> None:
    tokens = together(3, lambda i: replicas[i].lead("leader", f"replica-{i}", ttl=10, at=100.0))
    (leader,) = [i for i, token in enumerate(tokens) if token is not None]
    first = tokens[leader]
    assert replicas[leader].lead("leader", f"replica-{leader}", ttl=10, at=105.0) == first  # renewed, same token
    other = (leader + 1) % 3
    assert replicas[other].lead("leader", f"replica-{other}", ttl=10, at=110.0) is None  # renewed until 115
    second = replicas[other].lead("leader", f"replica-{other}", ttl=10, at=116.0)  # the leader died
    assert second is not None and second > first
    replicas[other].resign("leader", f"replica-{other}")  # a clean stop hands over at once
    assert replicas[leader].lead("leader", f"replica-{leader}", ttl=10, at=117.0) == second + 1


def test_the_migrated_database_is_the_declared_schema(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.store.schema import metadata

    store = Store(store_url)
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert differences == []


def test_an_unreachable_database_is_a_clear_refusal_without_the_password(monkeypatch) -> None:
    from bot.store import StoreUnavailable

    monkeypatch.setenv("FLUXBOT_DB_PASSWORD", "hunter2-secret")
    with pytest.raises(StoreUnavailable) as refused:
        Store("postgresql://fluxbot@127.0.0.1:1/fluxbot", password_env="FLUXBOT_DB_PASSWORD")
    message = str(refused.value)
    assert "cannot open the store at postgresql+psycopg://fluxbot:***@127.0.0.1:1/fluxbot" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("store, refusal", [
    ({"url": "postgresql://fluxbot:hunter2@db/fluxbot"}, "holds a password"),
    ({"url": "mysql://fluxbot@db/fluxbot"}, "store.url"),
    ({"url": "postgresql://fluxbot@db/fluxbot", "password_env": "lower"}, "store.password_env"),
])
def test_store_settings_are_checked(tmp_path: Path, store: dict, refusal: str) -> None:
    import json

    from bot.config import ConfigError, load_settings

    config = tmp_path / "fluxbot.yaml"
    config.write_text(json.dumps({"store": store}))
    with pytest.raises(ConfigError, match=refusal) as refused:
        load_settings(str(config))
    assert "hunter2" not in str(refused.value)


def test_an_empty_password_variable_is_named(monkeypatch) -> None:
    from bot.store import StoreUnavailable

    monkeypatch.delenv("FLUXBOT_DB_PASSWORD", raising=False)
    with pytest.raises(StoreUnavailable, match=r"\$FLUXBOT_DB_PASSWORD, which is empty"):
        Store("postgresql://fluxbot@127.0.0.1/fluxbot", password_env="FLUXBOT_DB_PASSWORD")


def test_during_a_database_outage_a_request_is_refused_and_nothing_is_done(example_repo: Path, make_bot) -> None:
    from sqlalchemy import create_engine

    from bot.render import to_text
    from tests.conftest import branches

    bot = make_bot(example_repo)
    bot.store.engine.dispose()
    bot.store.engine = create_engine("postgresql+psycopg://fluxbot@127.0.0.1:1/fluxbot")  # the database went away
    (reply,) = bot.handle("promote v0.4.0 to demo", "alice")
    assert "fluxbot cannot take requests right now" in to_text(reply)
    assert "nothing was done" in to_text(reply)
    assert branches(example_repo) == []


def test_serve_on_an_unreachable_database_says_so_in_one_line(example_repo: Path, tmp_path: Path, slack_standin) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "fluxbot.yaml"
    config.write_text("store:\n  url_env: FLUXBOT_STORE_URL\n  password_env: FLUXBOT_STORE_PASSWORD\n")
    env = {**os.environ, "FLUXBOT_STORE_URL": "postgresql://fluxbot@127.0.0.1:1/fluxbot",
           "FLUXBOT_STORE_PASSWORD": "hunter2-secret", "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s",
           "FLUXBOT_SLACK_API_URL": slack_standin.api_url}
    run = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--config", str(config), "--repo", str(example_repo),
                          "--port", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2, run.stderr
    assert "cannot open the store at postgresql+psycopg://fluxbot:***@127.0.0.1:1/fluxbot" in run.stderr
    assert "Traceback" not in run.stderr and "hunter2" not in run.stderr + run.stdout


def test_the_revision_the_store_expects_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from bot.store.store import MIGRATIONS, SCHEMA_REVISION

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
