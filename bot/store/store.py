"""The store: journal, gates, threads, follows, outbox, audit; on SQLite or PostgreSQL.

Each call is its own short transaction, so one Store is shared by every thread, and on PostgreSQL
by every replica: what must happen once (a delivery, a confirmation, a claim, a gate decision) is
decided by the database (unique keys, conditional updates, row locks), never by process memory.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.engine import RowMapping

from bot.store.engine import POSTGRESQL, READ_ONLY, StoreUnavailable, make_engine, store_url

__all__ = ["IntegrityError", "Retention", "Row", "Store", "now"]

Row = RowMapping  # rows read like dicts: row["column"]
MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration: a database there needs no Alembic at start (importing it costs 0.2 s of
# every `fluxbot shell`); tests/bot/test_store.py holds this to Alembic's own head.
SCHEMA_REVISION = "0003"
_MIGRATION_LOCK = 0x666C7578  # "flux": one replica migrates, the others wait (PostgreSQL advisory lock)


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


_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=512)
def _statement(sql: str) -> Any:
    """`?` placeholders (the style every query here is written in) as SQLAlchemy's named binds."""
    count = iter(range(sql.count("?")))
    return text(_PLACEHOLDER.sub(lambda _: f":p{next(count)}", sql))


class Result:
    """What a statement returned: rows as mappings, how many rows it changed."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Row]:
        return self.rows


class Transaction:
    """One transaction; `execute` takes SQL with `?` placeholders, as sqlite3 did."""

    def __init__(self, connection: Connection, dialect: str) -> None:
        self.connection, self.dialect = connection, dialect

    @property
    def lock(self) -> str:
        """Appended to a SELECT whose rows the transaction then changes: SQLite's transactions already
        hold the write lock (BEGIN IMMEDIATE); PostgreSQL locks the rows read."""
        return " FOR UPDATE" if self.dialect == POSTGRESQL else ""

    @property
    def skip_locked(self) -> str:
        """...and skips rows another replica holds (a work queue: each row to one claimer)."""
        return " FOR UPDATE SKIP LOCKED" if self.dialect == POSTGRESQL else ""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        result = self.connection.execute(_statement(sql), {f"p{i}": v for i, v in enumerate(params)})
        rows = list(result.mappings().all()) if result.returns_rows else []
        return Result(rows, result.rowcount)

    def insert(self, sql: str, params: Sequence[Any] = (), key: str = "id") -> int:
        """Run an INSERT and return the key the database gave the row (RETURNING, on both backends)."""
        row = self.execute(f"{sql} RETURNING {key}", params).fetchone()
        return int(row[key]) if row else 0


class Store:
    def __init__(self, target: str | Path, password_env: str = "") -> None:
        """`target`: a SQLite file path, or a `sqlite:///` or `postgresql://` URL."""
        self.url = store_url(target, password_env)
        self.engine = make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self.owner = f"{socket.gethostname()}/{os.getpid()}"  # which replica claimed a request, for operators
        try:
            self._migrate()
        except OperationalError as error:
            self.engine.dispose()
            raise StoreUnavailable(f"cannot open the store at {self.shown_url}: {_reason(error)}") from None

    @property
    def shown_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def shared(self) -> bool:
        """Several replicas may use this database (PostgreSQL); SQLite is one process's own."""
        return self.dialect == POSTGRESQL

    def _migrate(self) -> None:
        """Bring the database to the newest schema (Alembic), unless it is there already."""
        with self.engine.begin() as conn:
            if self.dialect == POSTGRESQL:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            if _current_revision(conn) == SCHEMA_REVISION:
                return
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[Transaction]:
        try:
            with self.engine.connect() as conn:
                with conn.execution_options(**{READ_ONLY: read_only}).begin():
                    yield Transaction(conn, self.dialect)
        except OperationalError as error:
            # nothing of the transaction was kept: the caller refuses with this message
            raise StoreUnavailable(f"the store ({self.shown_url}) is unavailable: {_reason(error)}") from None

    def query(self, sql: str, *args: Any) -> list[Row]:
        """One statement in its own transaction; a SELECT as a read (on SQLite: no write lock)."""
        with self.transaction(read_only=sql.lstrip()[:6].upper() == "SELECT") as db:
            return db.execute(sql, args).fetchall()

    # leader leases ------------------------------------------------------------------------------

    def lead(self, name: str, holder: str, ttl: float, at: float | None = None) -> int | None:
        """Take or renew the lease `name` for `holder`; its fencing token while held, else None.
        The token grows whenever the lease changes hands, so a deposed leader's writes can be told."""
        at = time.time() if at is None else at
        with self.transaction() as db:
            db.execute("INSERT INTO leases (name, holder, token, expires) VALUES (?, ?, 0, 0)"
                       " ON CONFLICT (name) DO NOTHING", (name, ""))
            row = db.execute(f"SELECT * FROM leases WHERE name = ?{db.lock}", (name,)).fetchone()
            assert row is not None
            if row["holder"] != holder and row["expires"] > at:
                return None
            token = row["token"] + (0 if row["holder"] == holder else 1)
            db.execute("UPDATE leases SET holder = ?, token = ?, expires = ? WHERE name = ?",
                       (holder, token, at + ttl, name))
            return int(token)

    def resign(self, name: str, holder: str) -> None:
        """Give the lease up at once (a clean stop), so another replica need not wait for it to run out."""
        with self.transaction() as db:
            db.execute("UPDATE leases SET expires = 0 WHERE name = ? AND holder = ?", (name, holder))

    def leader(self, name: str) -> Row | None:
        rows = self.query("SELECT * FROM leases WHERE name = ?", name)
        return rows[0] if rows else None

    # deliveries, confirmations, threads ---------------------------------------------------

    def delivery_seen(self, source: str, delivery_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM deliveries WHERE source = ? AND id = ?", source, delivery_id))

    def first_delivery(self, source: str, delivery_id: str) -> bool:
        """Record a delivery; False when it was seen before (a retry or redelivery)."""
        with self.transaction() as db:
            cursor = db.execute("INSERT INTO deliveries (source, id, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                (source, delivery_id, now()))
            return cursor.rowcount == 1

    def add_confirmation(self, cid: str, user: str, channel: str, thread_ts: str, text: str,
                         created: float, ttl: float) -> None:
        with self.transaction() as db:
            db.execute('INSERT INTO confirmations (id, "user", channel, thread_ts, text, created, expires)'
                       ' VALUES (?, ?, ?, ?, ?, ?, ?)', (cid, user, channel, thread_ts, text, created, created + ttl))

    def settle_confirmation(self, cid: str, user: str, at: float, outcome: str) -> tuple[str, Row | None]:
        """Move a pending confirmation to `outcome` ('confirmed'/'cancelled') if `user` may.

        Returns ('ok' | 'unknown' | 'not_requester' | 'expired' | 'settled', row); atomic, so a
        double click confirms once.
        """
        with self.transaction() as db:
            row = db.execute(f"SELECT * FROM confirmations WHERE id = ?{db.lock}", (cid,)).fetchone()
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
            db.execute("INSERT INTO threads (forge, number, channel, thread_ts, requester, created)"
                       " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", (forge, number, channel, thread_ts, requester, now()))

    def thread_for(self, forge: str, number: int) -> Row | None:
        rows = self.query("SELECT * FROM threads WHERE forge = ? AND number = ?", forge, number)
        return rows[0] if rows else None

    def save_gate(self, forge: str, number: int, head: str, state: str, description: str, clusters: list[str],
                  kind: str, requester: str, author: str, created: float, expires: float, base: str = "") -> None:
        """Start the gate for a PR's (new) head commit or base, replacing any earlier gate."""
        with self.transaction() as db:
            _replace(db, "gates", ("forge", "number"), dict(
                forge=forge, number=number, head=head, state=state, description=description, clusters=json.dumps(clusters),
                kind=kind, requester=requester, author=author, created=created, expires=expires, base=base, reported=0,
                request_channel=None, request_ts=None, decided_by=None))

    def gate_reported(self, forge: str, number: int, head: str, state: str) -> None:
        """The forge took the gate's `state` for `head` (a failed status POST is retried until then)."""
        with self.transaction() as db:
            db.execute("UPDATE gates SET reported = 1 WHERE forge = ? AND number = ? AND head = ? AND state = ?",
                       (forge, number, head, state))

    def gates_for_head(self, forge: str, head: str) -> list[Row]:
        return self.query("SELECT * FROM gates WHERE forge = ? AND head = ?", forge, head)

    def record_intent(self, forge: str, branch: str, sha: str, requester: str, cluster: str, kind: str,
                      channel: str, thread_ts: str, request_id: int = 0) -> None:
        """Who asked for the change fluxbot pushed as `sha` on `branch` (before its PR exists), in
        which journalled request."""
        with self.transaction() as db:
            _replace(db, "intents", ("forge", "branch", "sha"), dict(
                forge=forge, branch=branch, sha=sha, requester=requester, cluster=cluster, kind=kind, channel=channel,
                thread_ts=thread_ts, created=now(), at=time.time(), request_id=request_id))

    def intent(self, forge: str, branch: str, sha: str) -> Row | None:
        rows = self.query("SELECT * FROM intents WHERE forge = ? AND branch = ? AND sha = ?", forge, branch, sha)
        return rows[0] if rows else None

    def branch_intent(self, forge: str, branch: str) -> Row | None:
        """The newest intent on `branch`, whatever commit (commits pushed on top are someone else's)."""
        rows = self.query("SELECT * FROM intents WHERE forge = ? AND branch = ? ORDER BY at DESC LIMIT 1", forge, branch)
        return rows[0] if rows else None

    def add_pr_people(self, forge: str, number: int, logins: list[str]) -> None:
        with self.transaction() as db:
            for login in logins:
                if login:
                    db.execute("INSERT INTO pr_people (forge, number, login) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                               (forge, number, login))

    def pr_people(self, forge: str, number: int) -> frozenset[str]:
        return frozenset(r["login"] for r in self.query("SELECT login FROM pr_people WHERE forge = ? AND number = ?",
                                                        forge, number))

    def settle_thread(self, forge: str, number: int) -> None:
        """The PR merged or closed: its thread and its undecided gate are done."""
        with self.transaction() as db:
            db.execute("UPDATE threads SET settled = 1 WHERE forge = ? AND number = ?", (forge, number))
            db.execute("UPDATE gates SET state = 'closed' WHERE forge = ? AND number = ? AND state = 'pending'",
                       (forge, number))

    def gate(self, forge: str, number: int) -> Row | None:
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

    def pending_gates(self) -> list[Row]:
        return self.query("SELECT * FROM gates WHERE state = 'pending'")

    def open_threads(self, forge: str) -> list[Row]:
        """Threads whose PR has not been seen merged or closed yet."""
        return self.query("SELECT * FROM threads WHERE forge = ? AND settled = 0", forge)

    def freezes(self) -> dict[str, tuple[str, str]]:
        return {r["target"]: (r["reason"], r["by"]) for r in self.query("SELECT * FROM freezes")}

    def set_freeze(self, target: str, reason: str, by: str) -> None:
        with self.transaction() as db:
            _replace(db, "freezes", ("target",), dict(target=target, reason=reason, by=by, at=now()))

    def clear_freeze(self, target: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM freezes WHERE target = ?", (target,))

    def begin_request(self, user: str, text: str, channel: str, thread_ts: str, groups: list[str], confirmed: bool,
                      started: float, in_flight: float = 120.0) -> int:
        """Journal a request; retries leave it alone for `in_flight` seconds while it runs."""
        with self.transaction() as db:
            return db.insert(
                'INSERT INTO requests ("user", text, channel, thread_ts, groups, confirmed, state, created, next_try, owner)'
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (user, text, channel, thread_ts, json.dumps(sorted(groups)), int(confirmed), now(), started + in_flight,
                 self.owner))

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
            db.execute("UPDATE requests SET notified = 1, next_try = CASE WHEN next_try > ? THEN next_try ELSE ? END"
                       " WHERE id = ?", (not_before, not_before, request_id))

    def unanswered_requests(self, now: float, everything: bool = False, max_attempts: int = 10, backoff: float = 30.0,
                            longest: float = 600.0, limit: int = 0) -> tuple[list[Row], list[Row]]:
        """Claim the requests due for another attempt; (claimed, given up now after `max_attempts`).

        A claim is a lease: each claimed request counts one more attempt and is left alone until its
        next try, `backoff` seconds, doubling per attempt up to `longest`. On PostgreSQL a row another
        replica is claiming is skipped, so each is claimed once. `everything`: all unanswered ones are
        due (at start, when nothing of an earlier process can still be running: one process on SQLite
        only; replicas sharing PostgreSQL wait for the leases to run out). `limit`: claim at most that
        many (a worker takes one at a time, so the others get the rest).
        """
        cutoff = float("inf") if everything and not self.shared else now
        with self.transaction() as db:
            running = "state = 'running' AND next_try <= ?"
            abandoned = db.execute(f"SELECT * FROM requests WHERE {running} AND attempts >= ? ORDER BY id{db.skip_locked}",
                                   (cutoff, max_attempts)).fetchall()
            for row in abandoned:
                db.execute("UPDATE requests SET state = 'abandoned' WHERE id = ?", (row["id"],))
            due = db.execute(f"SELECT * FROM requests WHERE {running} AND attempts < ? ORDER BY id"
                             f"{' LIMIT ?' if limit else ''}{db.skip_locked}",
                             (cutoff, max_attempts, *((limit,) if limit else ()))).fetchall()
            for row in due:
                wait = min(longest, backoff * 2 ** row["attempts"])
                db.execute("UPDATE requests SET attempts = attempts + 1, next_try = ?, owner = ? WHERE id = ?",
                           (now + wait, self.owner, row["id"]))
        return due, abandoned

    def release_requests(self) -> None:
        """At a single process's start: requests a dead process claimed are due again at once."""
        with self.transaction() as db:
            db.execute("UPDATE requests SET next_try = 0 WHERE state = 'running'")

    def due(self, now: float) -> bool:
        """Whether any request waits to be claimed (a read: no lock, for workers polling)."""
        return bool(self.query("SELECT 1 FROM requests WHERE state = 'running' AND next_try <= ? LIMIT 1", now))

    def extend_lease(self, request_id: int, until: float) -> bool:
        """A heartbeat: the request is still being worked on here; False if it was answered meanwhile."""
        with self.transaction() as db:
            return db.execute("UPDATE requests SET next_try = ? WHERE id = ? AND state = 'running' AND next_try < ?",
                              (until, request_id, until)).rowcount == 1

    def add_follow(self, cluster: str, expected: str, tag: str, source: str, kustomization: str,
                   channel: str, thread_ts: str, started: float, merge: str = "") -> int:
        with self.transaction() as db:
            return db.insert(
                "INSERT INTO follows (cluster, expected, tag, source, kustomization, channel, thread_ts, started, merge)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cluster, expected, tag, source, kustomization, channel, thread_ts, started, merge))

    def update_follow(self, follow_id: int, **fields: Any) -> None:
        """Record a follow's progress (`requested`, `running`, `reported`)."""
        allowed = {"requested", "running", "reported"}
        assert set(fields) <= allowed, set(fields) - allowed
        with self.transaction() as db:
            for column, value in fields.items():
                db.execute(f"UPDATE follows SET {column} = ? WHERE id = ?", (value, follow_id))

    def last_applied_follow(self, cluster: str) -> Row | None:
        """The newest follow that ended with Flux having applied its tag on `cluster`."""
        rows = self.query("SELECT * FROM follows WHERE cluster = ? AND state = 'applied' ORDER BY id DESC LIMIT 1", cluster)
        return rows[0] if rows else None

    def follow(self, follow_id: int) -> Row:
        return self.query("SELECT * FROM follows WHERE id = ?", follow_id)[0]

    def open_follows(self) -> list[Row]:
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
        deleted = {"audit": 0, "requests": 0, "deliveries": 0, "outbox": 0}
        with self.transaction() as db:
            if retention.audit_days:
                deleted["audit"] += db.execute("DELETE FROM audit WHERE at < ?", (before(retention.audit_days),)).rowcount
            if retention.requests_days:
                deleted["requests"] += db.execute(f"DELETE FROM requests WHERE {done} AND created < ?",
                                                  (before(retention.requests_days),)).rowcount
            if retention.requests_days:  # a delivered or abandoned post is not needed once its request is gone
                deleted["outbox"] += db.execute("DELETE FROM outbox WHERE state IN ('posted', 'abandoned') AND created < ?",
                                                (before(retention.requests_days),)).rowcount
            if retention.deliveries_days:
                deleted["deliveries"] += db.execute("DELETE FROM deliveries WHERE at < ?",
                                                    (before(retention.deliveries_days),)).rowcount
            if retention.max_rows:
                deleted["requests"] += db.execute(
                    f"DELETE FROM requests WHERE {done} AND id NOT IN"
                    f" (SELECT id FROM requests WHERE {done} ORDER BY id DESC LIMIT ?)", (retention.max_rows,)).rowcount
                deleted["deliveries"] += db.execute(
                    "DELETE FROM deliveries WHERE (source, id) NOT IN (SELECT source, id FROM deliveries"
                    " ORDER BY at DESC, source DESC, id DESC LIMIT ?)", (retention.max_rows,)).rowcount
        return deleted
    # the chat outbox --------------------------------------------------------------------------

    def queue_posts(self, request_id: int, posts: list[tuple[str, str | None, dict[str, Any], str]],
                    finished: bool = False, deferred: bool = False) -> list[int]:
        """Queue (channel, thread_ts, payload, on_posted) posts; in the same transaction mark the request
        answered (`finished`) or its user told (`deferred`), so it is never run again for them."""
        with self.transaction() as db:
            ids = [db.insert("INSERT INTO outbox (request_id, channel, thread_ts, payload, on_posted, created)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (request_id, channel, thread_ts, json.dumps(payload), on_posted,
                                                           now()))
                   for channel, thread_ts, payload, on_posted in posts]
            if finished:
                db.execute("UPDATE requests SET state = 'answered' WHERE id = ? AND state = 'running'", (request_id,))
            if deferred:
                db.execute("UPDATE requests SET notified = 1 WHERE id = ?", (request_id,))
            return ids

    def pending_posts(self, ids: list[int] | None = None) -> list[Row]:
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
            row = db.execute(f"SELECT attempts FROM outbox WHERE id = ?{db.lock}", (post_id,)).fetchone()
            attempts = (row["attempts"] if row else 0) + 1
            state = "abandoned" if attempts >= max_attempts else "pending"
            db.execute("UPDATE outbox SET attempts = ?, next_try = ?, state = ? WHERE id = ?",
                       (attempts, now + min(longest, backoff * 2 ** (attempts - 1)), state, post_id))
            return state == "abandoned"

    # audit ------------------------------------------------------------------------------------

    def audit(self, user: str, command: str, outcome: str, clusters: tuple[str, ...] = (), **detail: Any) -> None:
        with self.transaction() as db:
            db.execute(
                'INSERT INTO audit (at, "user", command, outcome, detail, clusters) VALUES (?, ?, ?, ?, ?, ?)',
                (now(), user, command, outcome, json.dumps(detail, sort_keys=True, default=str), ",".join(clusters)),
            )

    def audit_log(self, limit: int = 100) -> list[Row]:
        return self.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", limit)


def _reason(error: Exception) -> str:
    """The database's own first line, without SQL or parameters (they may hold user text)."""
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [original.__class__.__name__])[0][:200]


def _current_revision(conn: Connection) -> str | None:
    """The revision Alembic recorded, read directly; None for a database it never migrated."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _replace(db: Transaction, table: str, keys: tuple[str, ...], row: Mapping[str, Any]) -> None:
    """Insert `row`, or overwrite every given column of the row with the same keys (an upsert that
    works alike on SQLite and PostgreSQL)."""
    columns = list(row)
    changes = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    db.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
               f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {changes}", tuple(row.values()))
