"""Alerts and health: resolved alerts, each beat's heartbeat pace, indexes for the rules.

- ``beatx_alerts.resolved_at``: when a ``resolved`` alert closed a condition alert.
- ``beatx_instances.heartbeat_every``: the instance's heartbeat interval (seconds), which
  ``health()`` judges its heartbeat age against.
- indexes on ``beatx_runs.finished_at`` and ``beatx_runs.created_at``: the alert engine
  reads only the runs finished (or recorded) since its last look.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import celery_beatx.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _double() -> sa.types.TypeEngine:
    return sa.Float().with_variant(sa.Double(), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("beatx_alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved_at", celery_beatx.store.types.DateTimeUTC(),
                                      nullable=True))
    with op.batch_alter_table("beatx_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_every", _double(), nullable=True))
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.create_index("ix_beatx_runs_finished_at", ["finished_at"], unique=False)
        batch_op.create_index("ix_beatx_runs_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_beatx_runs_created_at")
        batch_op.drop_index("ix_beatx_runs_finished_at")
    with op.batch_alter_table("beatx_instances", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_every")
    with op.batch_alter_table("beatx_alerts", schema=None) as batch_op:
        batch_op.drop_column("resolved_at")
