"""The baseline: every table of fluxbot up to its first versioned schema (revision 0001).

A database made by a fluxbot older than migrations (a SQLite state file) has some of these tables
with fewer columns: what it lacks is added, its rows stay. A new database gets them all.

Revision ID: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_baseline = sa.MetaData()  # frozen here: later schema changes are later revisions, never edits to this one
TABLES = [
    sa.Table('audit', _baseline,
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', sa.Text(), nullable=False),
        sa.Column('user', sa.Text(), nullable=False),
        sa.Column('command', sa.Text(), nullable=False),
        sa.Column('outcome', sa.Text(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('clusters', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True
    ),
    sa.Table('confirmations', _baseline,
        sa.Column('id', sa.Text(), nullable=False),
        sa.Column('user', sa.Text(), nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('thread_ts', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('expires', sa.Float(), nullable=False),
        sa.Column('state', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.PrimaryKeyConstraint('id')
    ),
    sa.Table('deliveries', _baseline,
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('id', sa.Text(), nullable=False),
        sa.Column('at', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'id')
    ),
    sa.Table('follows', _baseline,
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('cluster', sa.Text(), nullable=False),
        sa.Column('expected', sa.Text(), nullable=False),
        sa.Column('tag', sa.Text(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('kustomization', sa.Text(), nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('thread_ts', sa.Text(), nullable=False),
        sa.Column('started', sa.Float(), nullable=False),
        sa.Column('requested', sa.Integer(), server_default='0', nullable=False),
        sa.Column('state', sa.Text(), server_default=sa.text("'following'"), nullable=False),
        sa.Column('merge', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column('running', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column('reported', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True
    ),
    sa.Table('freezes', _baseline,
        sa.Column('target', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('by', sa.Text(), nullable=False),
        sa.Column('at', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('target')
    ),
    sa.Table('gates', _baseline,
        sa.Column('forge', sa.Text(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('head', sa.Text(), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('clusters', sa.Text(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        sa.Column('requester', sa.Text(), nullable=False),
        sa.Column('author', sa.Text(), nullable=False),
        sa.Column('request_channel', sa.Text(), nullable=True),
        sa.Column('request_ts', sa.Text(), nullable=True),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('expires', sa.Float(), nullable=False),
        sa.Column('decided_by', sa.Text(), nullable=True),
        sa.Column('base', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column('reported', sa.Integer(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('forge', 'number')
    ),
    sa.Table('intents', _baseline,
        sa.Column('forge', sa.Text(), nullable=False),
        sa.Column('branch', sa.Text(), nullable=False),
        sa.Column('sha', sa.Text(), nullable=False),
        sa.Column('requester', sa.Text(), nullable=False),
        sa.Column('cluster', sa.Text(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('thread_ts', sa.Text(), nullable=False),
        sa.Column('created', sa.Text(), nullable=False),
        sa.Column('at', sa.Float(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('forge', 'branch', 'sha')
    ),
    sa.Table('leases', _baseline,
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('holder', sa.Text(), nullable=False),
        sa.Column('token', sa.Integer(), nullable=False),
        sa.Column('expires', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('name')
    ),
    sa.Table('local_prs', _baseline,
        sa.Column('number', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('author', sa.Text(), nullable=False),
        sa.Column('cluster', sa.Text(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        sa.Column('branch', sa.Text(), nullable=False),
        sa.Column('head', sa.Text(), nullable=False),
        sa.Column('labels', sa.Text(), nullable=False),
        sa.Column('created', sa.Text(), nullable=False),
        sa.Column('updated', sa.Text(), nullable=False),
        sa.Column('merge_commit', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('number'),
        sqlite_autoincrement=True
    ),
    sa.Table('outbox', _baseline,
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('request_id', sa.Integer(), server_default='0', nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('thread_ts', sa.Text(), nullable=True),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('posted_ts', sa.Text(), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_try', sa.Float(), server_default='0', nullable=False),
        sa.Column('state', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column('on_posted', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True
    ),
    sa.Table('pr_people', _baseline,
        sa.Column('forge', sa.Text(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('login', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('forge', 'number', 'login')
    ),
    sa.Table('requests', _baseline,
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('user', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('thread_ts', sa.Text(), nullable=False),
        sa.Column('groups', sa.Text(), nullable=False),
        sa.Column('confirmed', sa.Integer(), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('created', sa.Text(), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('notified', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_try', sa.Float(), server_default='0', nullable=False),
        sa.Column('owner', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True
    ),
    sa.Table('threads', _baseline,
        sa.Column('forge', sa.Text(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('thread_ts', sa.Text(), nullable=False),
        sa.Column('requester', sa.Text(), nullable=False),
        sa.Column('created', sa.Text(), nullable=False),
        sa.Column('settled', sa.Integer(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('forge', 'number')
    ),
]


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in TABLES:
        if table.name not in present:
            table.create(bind)
            continue
        have = {c["name"] for c in sa.inspect(bind).get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:  # a column a newer fluxbot added: every one has a default
                op.add_column(table.name, sa.Column(column.name, column.type, nullable=column.nullable,
                                                     server_default=column.server_default))
    if bind.dialect.name == "sqlite" and "intents" in present:
        # intents of a pre-migration file have no time: their insertion order stands in for it
        op.execute("UPDATE intents SET at = rowid WHERE at = 0")
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes("local_prs")}
    if "one_open_pr_per_cluster" not in indexes:
        op.create_index("one_open_pr_per_cluster", "local_prs", ["cluster"], unique=True,
                        sqlite_where=sa.text("state = 'open'"), postgresql_where=sa.text("state = 'open'"))


def downgrade() -> None:
    raise NotImplementedError("fluxbot does not migrate its state backwards; restore a backup instead")
