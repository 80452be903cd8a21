"""Durable state: SQLite by default (one file under the state dir), PostgreSQL for several replicas.

`schema` declares the tables once for both; `migrations` (Alembic) brings any earlier database
forward; `engine` knows each backend's connection rules; `store` is what the rest of fluxbot calls.
"""
from bot.store.engine import StoreUnavailable, store_url
from bot.store.store import IntegrityError, Retention, Row, Store, now

__all__ = ["IntegrityError", "Retention", "Row", "Store", "StoreUnavailable", "now", "store_url"]
