"""The outbox records when a post was queued, so retention can delete delivered posts (#16).

Revision ID: 0002
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as table:
        table.add_column(sa.Column("created", sa.Text(), nullable=False, server_default=sa.text("''")))
    # posts queued before this revision count from now: kept one retention period more, never lost early
    op.execute(sa.text("UPDATE outbox SET created = :now WHERE created = ''").bindparams(
        now=datetime.now(timezone.utc).isoformat(timespec="seconds")))


def downgrade() -> None:
    raise NotImplementedError("fluxbot does not migrate its state backwards; restore a backup instead")
