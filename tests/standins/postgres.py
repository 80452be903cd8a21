"""A PostgreSQL schema of its own for a test or a bench run, on the server CI and sessions start."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import sqlalchemy

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


class Unreachable(Exception):
    """No PostgreSQL answers at the URL; the message is the server's (or the socket's) first line."""


@contextmanager
def schema(base: str = SERVER, prefix: str = "t") -> Iterator[str]:
    """A URL whose connections use a new schema on `base`; the schema is dropped afterwards."""
    admin = sqlalchemy.create_engine(base.replace("postgresql://", "postgresql+psycopg://"))
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    except sqlalchemy.exc.OperationalError as error:
        admin.dispose()
        raise Unreachable(str(error.orig).splitlines()[0]) from None
    try:
        yield f"{base}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()
