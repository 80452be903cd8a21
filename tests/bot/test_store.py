"""The request journal's retry schedule, and a state file from an older fluxbot."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.store import Store


def test_retries_back_off_doubling_up_to_ten_minutes(tmp_path: Path) -> None:
    store = Store(tmp_path / "fluxbot.db")
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
    store = Store(tmp_path / "fluxbot.db")
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
