"""Durable state in SQLite: local pull requests and the audit log.

One file under the state dir; it survives restarts. Each call opens its own short transaction, so
the store is safe to share between threads.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
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
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    command TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
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

    # audit ------------------------------------------------------------------------------------

    def audit(self, user: str, command: str, outcome: str, **detail: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO audit (at, user, command, outcome, detail) VALUES (?, ?, ?, ?, ?)",
                (now(), user, command, outcome, json.dumps(detail, sort_keys=True, default=str)),
            )

    def audit_log(self, limit: int = 100) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", limit)
