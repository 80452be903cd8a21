"""Durable state in SQLite: local pull requests and the audit log.

One file under the state dir; it survives restarts. Each call opens its own short transaction, so
the store is safe to share between threads.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_prs (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'closed', 'merged')),
    author TEXT NOT NULL,
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL,
    branch TEXT NOT NULL,
    head TEXT NOT NULL,
    labels TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    merge_commit TEXT
);
-- one open change per cluster, enforced by the database as well as by the planner
CREATE UNIQUE INDEX IF NOT EXISTS one_open_pr_per_cluster ON local_prs(cluster) WHERE state = 'open';
-- every webhook or chat delivery seen, so a retry or redelivery never repeats work
CREATE TABLE IF NOT EXISTS deliveries (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE TABLE IF NOT EXISTS confirmations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
);
-- the chat thread of the request that opened a PR: later updates about the PR go there
CREATE TABLE IF NOT EXISTS threads (
    forge TEXT NOT NULL,
    number INTEGER NOT NULL,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    requester TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (forge, number)
);
-- one change gate per PR, for its current head commit; approval is for that exact commit
CREATE TABLE IF NOT EXISTS gates (
    forge TEXT NOT NULL,
    number INTEGER NOT NULL,
    head TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    clusters TEXT NOT NULL,
    kind TEXT NOT NULL,
    requester TEXT NOT NULL,
    author TEXT NOT NULL,
    request_channel TEXT,
    request_ts TEXT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    decided_by TEXT,
    PRIMARY KEY (forge, number)
);
-- what fluxbot was asked for, recorded BEFORE its PR is opened: GitHub sends `opened` while the
-- create call is still in flight, so the gate finds who asked, for which cluster and which kind of
-- change by the head branch and the exact commit fluxbot pushed, never from labels
CREATE TABLE IF NOT EXISTS intents (
    forge TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    requester TEXT NOT NULL,
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (forge, branch, sha)
);
-- the forge accounts that opened or pushed to a PR (four eyes on hand-made PRs)
CREATE TABLE IF NOT EXISTS pr_people (
    forge TEXT NOT NULL,
    number INTEGER NOT NULL,
    login TEXT NOT NULL,
    PRIMARY KEY (forge, number, login)
);
CREATE TABLE IF NOT EXISTS freezes (
    target TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    at TEXT NOT NULL
);
-- the journal of chat requests: one still `running` after a restart is run again (idempotently)
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    groups TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    state TEXT NOT NULL,
    created TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0,  -- the user was told it waits for the forge / git host
    next_try REAL NOT NULL DEFAULT 0  -- unix time; retries back off
);
-- reconciles being followed after a merge; `following` ones resume after a restart
CREATE TABLE IF NOT EXISTS follows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster TEXT NOT NULL,
    expected TEXT NOT NULL,
    tag TEXT NOT NULL,
    source TEXT NOT NULL,
    kustomization TEXT NOT NULL,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    started REAL NOT NULL,
    requested INTEGER NOT NULL DEFAULT 0,  -- 1: the source was asked to reconcile, 2: the Kustomization too
    state TEXT NOT NULL DEFAULT 'following',
    merge TEXT NOT NULL DEFAULT '',  -- the merge commit the owner Kustomization must apply
    running TEXT NOT NULL DEFAULT '',  -- the revision Flux had applied when the follow began
    reported TEXT NOT NULL DEFAULT ''  -- a verdict already posted (failed, suspended) while it goes on
);
-- chat posts not yet taken by Slack, in order: an answer is rendered once, then every message of it
-- is delivered exactly once (a retry resumes at the first one missing, it never re-runs the request)
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL DEFAULT 0,
    channel TEXT NOT NULL,
    thread_ts TEXT,
    payload TEXT NOT NULL,  -- JSON: blocks, text
    posted_ts TEXT,  -- set once Slack took it
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | posted | abandoned
    on_posted TEXT NOT NULL DEFAULT ''  -- JSON: what to record once posted (a gate card's ts)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    command TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    clusters TEXT NOT NULL DEFAULT ''  -- the clusters the request touched, comma-separated
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Retention:
    """How long records are kept (`retention:` in fluxbot.yaml); 0 keeps them forever.

    The audit is the record of who did what: kept longest. A journalled request is only needed until
    it is answered (the audit keeps its text), a delivery ID only while Slack or GitHub may redeliver.
    """

    audit_days: int = 730
    requests_days: int = 2
    deliveries_days: int = 30
    max_rows: int = 100_000  # journal and delivery rows beyond this many, oldest first, go too


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns newer versions use to a state file an older fluxbot wrote."""
        added = {"requests": {"attempts": "INTEGER NOT NULL DEFAULT 0", "notified": "INTEGER NOT NULL DEFAULT 0",
                              "next_try": "REAL NOT NULL DEFAULT 0"},
                 # the base a gate was judged against, and whether its status reached the forge
                 "gates": {"base": "TEXT NOT NULL DEFAULT ''", "reported": "INTEGER NOT NULL DEFAULT 0"},
                 # a thread whose PR merged or closed (and was told so) is left out of catch-up
                 "threads": {"settled": "INTEGER NOT NULL DEFAULT 0"},
                 "audit": {"clusters": "TEXT NOT NULL DEFAULT ''"},
                 # a follow's merge commit, what Flux ran when it began, a verdict already posted
                 "follows": {"merge": "TEXT NOT NULL DEFAULT ''", "running": "TEXT NOT NULL DEFAULT ''",
                             "reported": "TEXT NOT NULL DEFAULT ''"}}
        with self.transaction() as db:
            for table, columns in added.items():
                present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, declaration in columns.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process (what crash safety needs); only an OS crash
            # could lose the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return self._connection().execute(sql, args).fetchall()

    # deliveries, confirmations, threads ---------------------------------------------------

    def delivery_seen(self, source: str, delivery_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM deliveries WHERE source = ? AND id = ?", source, delivery_id))

    def first_delivery(self, source: str, delivery_id: str) -> bool:
        """Record a delivery; False when it was seen before (a retry or redelivery)."""
        with self.transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO deliveries (source, id, at) VALUES (?, ?, ?)",
                                (source, delivery_id, now()))
            return cursor.rowcount == 1

    def add_confirmation(self, cid: str, user: str, channel: str, thread_ts: str, text: str,
                         created: float, ttl: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO confirmations (id, user, channel, thread_ts, text, created, expires)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", (cid, user, channel, thread_ts, text, created, created + ttl))

    def settle_confirmation(self, cid: str, user: str, at: float, outcome: str) -> tuple[str, sqlite3.Row | None]:
        """Move a pending confirmation to `outcome` ('confirmed'/'cancelled') if `user` may.

        Returns ('ok' | 'unknown' | 'not_requester' | 'expired' | 'settled', row); atomic, so a
        double click confirms once.
        """
        with self.transaction() as db:
            row = db.execute("SELECT * FROM confirmations WHERE id = ?", (cid,)).fetchone()
            if row is None:
                return "unknown", None
            if row["state"] != "pending":
                return "settled", row
            if row["user"] != user:
                return "not_requester", row
            if at > row["expires"]:
                db.execute("UPDATE confirmations SET state = 'expired' WHERE id = ?", (cid,))
                return "expired", row
            db.execute("UPDATE confirmations SET state = ? WHERE id = ?", (outcome, cid))
            return "ok", row

    def link_thread(self, forge: str, number: int, channel: str, thread_ts: str, requester: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO threads (forge, number, channel, thread_ts, requester, created)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (forge, number, channel, thread_ts, requester, now()))

    def thread_for(self, forge: str, number: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM threads WHERE forge = ? AND number = ?", forge, number)
        return rows[0] if rows else None

    def save_gate(self, forge: str, number: int, head: str, state: str, description: str, clusters: list[str],
                  kind: str, requester: str, author: str, created: float, expires: float, base: str = "") -> None:
        """Start the gate for a PR's (new) head commit or base, replacing any earlier gate."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO gates (forge, number, head, state, description, clusters, kind, requester,"
                " author, created, expires, base, reported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (forge, number, head, state, description, json.dumps(clusters), kind, requester, author, created,
                 expires, base),
            )

    def gate_reported(self, forge: str, number: int, head: str, state: str) -> None:
        """The forge took the gate's `state` for `head` (a failed status POST is retried until then)."""
        with self.transaction() as db:
            db.execute("UPDATE gates SET reported = 1 WHERE forge = ? AND number = ? AND head = ? AND state = ?",
                       (forge, number, head, state))

    def gates_for_head(self, forge: str, head: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM gates WHERE forge = ? AND head = ?", forge, head)

    def record_intent(self, forge: str, branch: str, sha: str, requester: str, cluster: str, kind: str,
                      channel: str, thread_ts: str) -> None:
        """Who asked for the change fluxbot pushed as `sha` on `branch` (before its PR exists)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO intents (forge, branch, sha, requester, cluster, kind, channel, thread_ts,"
                       " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (forge, branch, sha, requester, cluster, kind, channel, thread_ts, now()))

    def intent(self, forge: str, branch: str, sha: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM intents WHERE forge = ? AND branch = ? AND sha = ?", forge, branch, sha)
        return rows[0] if rows else None

    def branch_intent(self, forge: str, branch: str) -> sqlite3.Row | None:
        """The newest intent on `branch`, whatever commit (commits pushed on top are someone else's)."""
        rows = self.query("SELECT * FROM intents WHERE forge = ? AND branch = ? ORDER BY rowid DESC LIMIT 1", forge, branch)
        return rows[0] if rows else None

    def add_pr_people(self, forge: str, number: int, logins: list[str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO pr_people (forge, number, login) VALUES (?, ?, ?)",
                           [(forge, number, login) for login in logins if login])

    def pr_people(self, forge: str, number: int) -> frozenset[str]:
        return frozenset(r["login"] for r in self.query("SELECT login FROM pr_people WHERE forge = ? AND number = ?",
                                                        forge, number))

    def settle_thread(self, forge: str, number: int) -> None:
        """The PR merged or closed: its thread and its undecided gate are done."""
        with self.transaction() as db:
            db.execute("UPDATE threads SET settled = 1 WHERE forge = ? AND number = ?", (forge, number))
            db.execute("UPDATE gates SET state = 'closed' WHERE forge = ? AND number = ? AND state = 'pending'",
                       (forge, number))

    def gate(self, forge: str, number: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM gates WHERE forge = ? AND number = ?", forge, number)
        return rows[0] if rows else None

    def gate_request_posted(self, forge: str, number: int, head: str, channel: str, ts: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE gates SET request_channel = ?, request_ts = ? WHERE forge = ? AND number = ? AND head = ?",
                       (channel, ts, forge, number, head))

    def decide_gate(self, forge: str, number: int, head: str, state: str, description: str, by: str) -> bool:
        """Settle a pending gate for exactly `head`; False if it was already settled or moved on."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE gates SET state = ?, description = ?, decided_by = ?"
                " WHERE forge = ? AND number = ? AND head = ? AND state = 'pending'",
                (state, description, by, forge, number, head))
            return cursor.rowcount == 1

    def pending_gates(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM gates WHERE state = 'pending'")

    def open_threads(self, forge: str) -> list[sqlite3.Row]:
        """Threads whose PR has not been seen merged or closed yet."""
        return self.query("SELECT * FROM threads WHERE forge = ? AND settled = 0", forge)

    def freezes(self) -> dict[str, tuple[str, str]]:
        return {r["target"]: (r["reason"], r["by"]) for r in self.query("SELECT * FROM freezes")}

    def set_freeze(self, target: str, reason: str, by: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO freezes (target, reason, by, at) VALUES (?, ?, ?, ?)", (target, reason, by, now()))

    def clear_freeze(self, target: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM freezes WHERE target = ?", (target,))

    def begin_request(self, user: str, text: str, channel: str, thread_ts: str, groups: list[str], confirmed: bool,
                      started: float, in_flight: float = 120.0) -> int:
        """Journal a request; retries leave it alone for `in_flight` seconds while it runs."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO requests (user, text, channel, thread_ts, groups, confirmed, state, created, next_try)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (user, text, channel, thread_ts, json.dumps(sorted(groups)), int(confirmed), now(), started + in_flight))
            return int(cursor.lastrowid or 0)

    def fix_request_text(self, request_id: int, text: str) -> None:
        """Record the request with its decision fixed (`rollback x from a to b`): what a re-run acts on."""
        with self.transaction() as db:
            db.execute("UPDATE requests SET text = ? WHERE id = ?", (text, request_id))

    def finish_request(self, request_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE requests SET state = 'answered' WHERE id = ? AND state = 'running'", (request_id,))

    def defer_request(self, request_id: int, not_before: float = 0) -> None:
        """The request waits for the forge or git host; the user has been told so. `not_before`:
        the forge asked to be left alone until then (a rate limit's retry-after)."""
        with self.transaction() as db:
            db.execute("UPDATE requests SET notified = 1, next_try = MAX(next_try, ?) WHERE id = ?", (not_before, request_id))

    def unanswered_requests(self, now: float, everything: bool = False, max_attempts: int = 10, backoff: float = 30.0,
                            longest: float = 600.0) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        """(requests due for another attempt, requests given up now after `max_attempts`).

        Each due request counts one more attempt; the next one is due after `backoff` seconds,
        doubling per attempt up to `longest`. `everything`: all unanswered ones are due (at start,
        when nothing of an earlier process can still be running).
        """
        cutoff = float("inf") if everything else now
        with self.transaction() as db:
            running = "state = 'running' AND next_try <= ?"
            abandoned = db.execute(f"SELECT * FROM requests WHERE {running} AND attempts >= ? ORDER BY id",
                                   (cutoff, max_attempts)).fetchall()
            db.execute(f"UPDATE requests SET state = 'abandoned' WHERE {running} AND attempts >= ?", (cutoff, max_attempts))
            due = db.execute(f"SELECT * FROM requests WHERE {running} ORDER BY id", (cutoff,)).fetchall()
            for row in due:
                wait = min(longest, backoff * 2 ** row["attempts"])
                db.execute("UPDATE requests SET attempts = attempts + 1, next_try = ? WHERE id = ?", (now + wait, row["id"]))
        return due, abandoned

    def add_follow(self, cluster: str, expected: str, tag: str, source: str, kustomization: str,
                   channel: str, thread_ts: str, started: float, merge: str = "") -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO follows (cluster, expected, tag, source, kustomization, channel, thread_ts, started, merge)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cluster, expected, tag, source, kustomization, channel, thread_ts, started, merge))
            return int(cursor.lastrowid or 0)

    def update_follow(self, follow_id: int, **fields: Any) -> None:
        """Record a follow's progress (`requested`, `running`, `reported`)."""
        allowed = {"requested", "running", "reported"}
        assert set(fields) <= allowed, set(fields) - allowed
        with self.transaction() as db:
            for column, value in fields.items():
                db.execute(f"UPDATE follows SET {column} = ? WHERE id = ?", (value, follow_id))

    def last_applied_follow(self, cluster: str) -> sqlite3.Row | None:
        """The newest follow that ended with Flux having applied its tag on `cluster`."""
        rows = self.query("SELECT * FROM follows WHERE cluster = ? AND state = 'applied' ORDER BY id DESC LIMIT 1", cluster)
        return rows[0] if rows else None

    def follow(self, follow_id: int) -> sqlite3.Row:
        return self.query("SELECT * FROM follows WHERE id = ?", follow_id)[0]

    def open_follows(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM follows WHERE state = 'following' ORDER BY id")

    def follow_requested(self, follow_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE follows SET requested = 1 WHERE id = ?", (follow_id,))

    def end_follow(self, follow_id: int, state: str) -> bool:
        """Close a follow; False when it was closed already (so its outcome is posted once)."""
        with self.transaction() as db:
            cursor = db.execute("UPDATE follows SET state = ? WHERE id = ? AND state = 'following'", (state, follow_id))
            return cursor.rowcount == 1

    # retention ----------------------------------------------------------------------------------

    def prune(self, retention: Retention, at: datetime | None = None) -> dict[str, int]:
        """Delete what `retention` no longer keeps; rows per table deleted. Requests still running
        (the journal) are never deleted."""
        at = at or datetime.now(timezone.utc)

        def before(days: int) -> str:
            return (at - timedelta(days=days)).isoformat(timespec="seconds")

        done = "state IN ('answered', 'abandoned')"
        deleted = {"audit": 0, "requests": 0, "deliveries": 0}
        with self.transaction() as db:
            if retention.audit_days:
                deleted["audit"] += db.execute("DELETE FROM audit WHERE at < ?", (before(retention.audit_days),)).rowcount
            if retention.requests_days:
                deleted["requests"] += db.execute(f"DELETE FROM requests WHERE {done} AND created < ?",
                                                  (before(retention.requests_days),)).rowcount
            if retention.deliveries_days:
                deleted["deliveries"] += db.execute("DELETE FROM deliveries WHERE at < ?",
                                                    (before(retention.deliveries_days),)).rowcount
            if retention.max_rows:
                deleted["requests"] += db.execute(
                    f"DELETE FROM requests WHERE {done} AND id NOT IN"
                    f" (SELECT id FROM requests WHERE {done} ORDER BY id DESC LIMIT ?)", (retention.max_rows,)).rowcount
                deleted["deliveries"] += db.execute(
                    "DELETE FROM deliveries WHERE rowid NOT IN (SELECT rowid FROM deliveries ORDER BY at DESC, rowid DESC"
                    " LIMIT ?)", (retention.max_rows,)).rowcount
        return deleted
    # the chat outbox --------------------------------------------------------------------------

    def queue_posts(self, request_id: int, posts: list[tuple[str, str | None, dict[str, Any], str]],
                    finished: bool = False, deferred: bool = False) -> list[int]:
        """Queue (channel, thread_ts, payload, on_posted) posts; in the same transaction mark the request
        answered (`finished`) or its user told (`deferred`), so it is never run again for them."""
        with self.transaction() as db:
            ids = [int(db.execute("INSERT INTO outbox (request_id, channel, thread_ts, payload, on_posted)"
                                  " VALUES (?, ?, ?, ?, ?)",
                                  (request_id, channel, thread_ts, json.dumps(payload), on_posted)).lastrowid or 0)
                   for channel, thread_ts, payload, on_posted in posts]
            if finished:
                db.execute("UPDATE requests SET state = 'answered' WHERE id = ? AND state = 'running'", (request_id,))
            if deferred:
                db.execute("UPDATE requests SET notified = 1 WHERE id = ?", (request_id,))
            return ids

    def pending_posts(self, ids: list[int] | None = None) -> list[sqlite3.Row]:
        """Posts still to deliver (those given, or all not yet posted), oldest first."""
        if ids is not None:
            marks = ",".join("?" * len(ids)) or "NULL"
            return self.query(f"SELECT * FROM outbox WHERE state = 'pending' AND id IN ({marks}) ORDER BY id", *ids)
        return self.query("SELECT * FROM outbox WHERE state IN ('pending', 'sending') ORDER BY id")

    def claim_post(self, post_id: int) -> bool:
        """Take a pending post for sending; False when another thread has it (or it is done)."""
        with self.transaction() as db:
            return db.execute("UPDATE outbox SET state = 'sending' WHERE id = ? AND state = 'pending'",
                              (post_id,)).rowcount == 1

    def release_posts(self) -> None:
        """At start: posts a dead process was sending are pending again."""
        with self.transaction() as db:
            db.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")

    def post_delivered(self, post_id: int, ts: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE outbox SET state = 'posted', posted_ts = ? WHERE id = ?", (ts, post_id))

    def post_failed(self, post_id: int, now: float, max_attempts: int, backoff: float = 15.0,
                    longest: float = 600.0) -> bool:
        """Count a failed attempt and back off; True when the post is given up now."""
        with self.transaction() as db:
            row = db.execute("SELECT attempts FROM outbox WHERE id = ?", (post_id,)).fetchone()
            attempts = (row["attempts"] if row else 0) + 1
            state = "abandoned" if attempts >= max_attempts else "pending"
            db.execute("UPDATE outbox SET attempts = ?, next_try = ?, state = ? WHERE id = ?",
                       (attempts, now + min(longest, backoff * 2 ** (attempts - 1)), state, post_id))
            return state == "abandoned"

    # audit ------------------------------------------------------------------------------------

    def audit(self, user: str, command: str, outcome: str, clusters: tuple[str, ...] = (), **detail: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO audit (at, user, command, outcome, detail, clusters) VALUES (?, ?, ?, ?, ?, ?)",
                (now(), user, command, outcome, json.dumps(detail, sort_keys=True, default=str), ",".join(clusters)),
            )

    def audit_log(self, limit: int = 100) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", limit)
