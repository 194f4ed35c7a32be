"""Absolute ``expires``; exact seconds and group names on MySQL/MariaDB.

- ``beatx_tasks.expires_at``: an ``expires`` given as a datetime (``expires`` keeps seconds).
- MySQL/MariaDB: ``expires`` and ``jitter`` become ``DOUBLE`` (``FLOAT`` there is single
  precision: 0.123456789 came back as 0.123457, so an unchanged ``beat_schedule`` entry
  looked changed at every start), and ``group_name`` gets the binary NO PAD collation task
  names have since 0002 (``enable_group("Reports")`` changed group "reports" there only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import celery_beatx.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _binary_collation(bind: sa.engine.Connection) -> str:
    # As in 0002: MariaDB's utf8mb4_bin pads with spaces; MySQL 8's 0900_bin does not.
    if getattr(bind.dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin"


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("beatx_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", celery_beatx.store.types.DateTimeUTC(),
                                      nullable=True))
    if bind.dialect.name in ("mysql", "mariadb"):
        collation = _binary_collation(bind)
        op.execute("ALTER TABLE beatx_tasks MODIFY expires DOUBLE NULL, "
                   "MODIFY jitter DOUBLE NOT NULL, "
                   f"MODIFY group_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE {collation} "
                   "NULL")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("mysql", "mariadb"):
        op.execute("ALTER TABLE beatx_tasks MODIFY expires FLOAT NULL, "
                   "MODIFY jitter FLOAT NOT NULL")
    with op.batch_alter_table("beatx_tasks", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
