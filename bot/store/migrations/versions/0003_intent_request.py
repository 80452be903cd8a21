"""An intent names the journalled request that pushed it, so a re-run of that request after its
process died knows the open PR is its own (#19).

Revision ID: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intents") as table:
        # 0: pushed before this revision, or outside the journal
        table.add_column(sa.Column("request_id", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    raise NotImplementedError("fluxbot does not migrate its state backwards; restore a backup instead")
