"""Alembic's entry point: fluxbot runs migrations itself, on the connection the store opened."""
from alembic import context

connection = context.config.attributes["connection"]
# batch mode: SQLite cannot ALTER most things in place; Alembic copies the table for it
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
