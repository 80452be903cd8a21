"""Connections to the store's database: which backend a URL means, and each backend's rules.

SQLite (the embedded default): one file, WAL, and every transaction `BEGIN IMMEDIATE`, so a
transaction that reads and then writes holds the write lock from its start (SQLAlchemy's recipe
for pysqlite: https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
PostgreSQL (several replicas): psycopg 3, the password from the environment, never in the URL
fluxbot logs or the config it reads.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


class StoreUnavailable(Exception):
    """The database cannot be reached or used; the message is safe to show."""


SQLITE, POSTGRESQL = "sqlite", "postgresql"
READ_ONLY = "fluxbot_read_only"  # an execution option: a transaction that only reads


def store_url(target: str | Path, password_env: str = "") -> URL:
    """A SQLAlchemy URL for a SQLite file path or a `sqlite:///` / `postgresql://` URL; a PostgreSQL
    password comes from `password_env` when set (so it is never written in fluxbot.yaml)."""
    text = str(target)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text)))
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreUnavailable(f"store.url is not a database URL: {_shown(text)}; use sqlite:///path or "
                               "postgresql://user@host:5432/database") from None
    if url.get_backend_name() == POSTGRESQL:
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3, whatever driver the URL named
        if password_env:
            password = os.environ.get(password_env, "")
            if not password:
                raise StoreUnavailable(f"store.password_env names ${password_env}, which is empty; set it "
                                       "(the chart takes it from a Secret)")
            url = url.set(password=password)
    elif url.get_backend_name() != SQLITE:
        raise StoreUnavailable(f"store.url uses {url.get_backend_name()!r}; fluxbot keeps its state in "
                               "sqlite:///path (one replica) or postgresql://... (several replicas)")
    return url


def _shown(text: str) -> str:
    """A URL as it may be shown: its password, if any, masked."""
    try:
        return make_url(text).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable)"


def make_engine(url: URL) -> Engine:
    if url.get_backend_name() == SQLITE:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        # a pool of reusable connections; any number of threads (waitress, workers) may hold one
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=5, max_overflow=-1)
        event.listen(engine, "connect", _sqlite_connected)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # pre-ping: a connection the database dropped (failover, restart) is replaced, not handed out
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args={"connect_timeout": 10, "application_name": "fluxbot"})


def _sqlite_begin(conn: Any) -> None:
    # A read takes no write lock (WAL readers never wait); a transaction that may write takes it first,
    # so read-then-write cannot deadlock with another writer
    reading = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN DEFERRED" if reading else "BEGIN IMMEDIATE")


def _sqlite_connected(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite's own BEGIN off: ours is IMMEDIATE
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL survives a killed process (what crash safety needs); only an OS crash could lose
    # the last commits
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
