"""Run outcomes: the retry decision of a failed run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_state", sa.String(length=16), nullable=True))
    op.execute("INSERT INTO beatx_counters (name, value) VALUES ('runs', 0)")


def downgrade() -> None:
    op.execute("DELETE FROM beatx_counters WHERE name = 'runs'")
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.drop_column("retry_state")
