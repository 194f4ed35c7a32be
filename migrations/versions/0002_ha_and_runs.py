"""HA lease fencing tokens, instance roles, run kinds and retries, binary name collation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import celery_beatx.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Every column that holds a task name (or lock name): compared byte for byte on MySQL and
#: MariaDB too, as on SQLite and PostgreSQL ("report" is not "Report" nor "report ").
NAME_COLUMNS = (
    ("beatx_tasks", "name", False),
    ("beatx_task_versions", "task_name", False),
    ("beatx_dependencies", "task_name", False),
    ("beatx_dependencies", "depends_on", False),
    ("beatx_tombstones", "name", False),
    ("beatx_runs", "task_name", False),
    ("beatx_alerts", "task_name", True),
    ("beatx_locks", "name", False),
    ("beatx_instances", "instance_id", False),
)


FK_NAME = "fk_beatx_dependencies_task_name_beatx_tasks"


def _binary_collation(bind: sa.engine.Connection) -> str:
    # MariaDB's utf8mb4_bin pads with spaces ("a" = "a "); its nopad variant does not.
    # MySQL 8's utf8mb4_0900_bin is NO PAD already.
    if getattr(bind.dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin"


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("beatx_locks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("host", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
    with op.batch_alter_table("beatx_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False,
                                      server_default="standby"))
        batch_op.add_column(sa.Column("host", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("stopped_at", celery_beatx.store.types.DateTimeUTC(),
                                      nullable=True))
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False,
                                      server_default="scheduled"))
        batch_op.add_column(sa.Column("token", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("retry_at", celery_beatx.store.types.DateTimeUTC(),
                                      nullable=True))
        batch_op.add_column(sa.Column("duplicates", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
    if bind.dialect.name in ("mysql", "mariadb"):
        collation = _binary_collation(bind)
        # MariaDB will not change a column a foreign key uses: drop the key meanwhile.
        op.drop_constraint(FK_NAME, "beatx_dependencies", type_="foreignkey")
        for table, column, nullable in NAME_COLUMNS:
            op.execute(f"ALTER TABLE {table} MODIFY {column} VARCHAR(200) CHARACTER SET "
                       f"utf8mb4 COLLATE {collation} {'NULL' if nullable else 'NOT NULL'}")
        op.create_foreign_key(FK_NAME, "beatx_dependencies", "beatx_tasks", ["task_name"],
                              ["name"], ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        for column in ("worker", "duplicates", "retry_at", "token", "kind"):
            batch_op.drop_column(column)
    with op.batch_alter_table("beatx_instances", schema=None) as batch_op:
        for column in ("stopped_at", "pid", "host", "role"):
            batch_op.drop_column(column)
    with op.batch_alter_table("beatx_locks", schema=None) as batch_op:
        for column in ("pid", "host", "token"):
            batch_op.drop_column(column)
