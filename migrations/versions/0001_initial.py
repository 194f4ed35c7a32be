"""Initial schema: tasks, versions, dependencies, change feed, locks, runs, alerts.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-29 14:48:39.390764
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import celery_beatx.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "beatx_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beatx_alerts")),
    )
    with op.batch_alter_table("beatx_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_beatx_alerts_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_beatx_alerts_level"), ["level"], unique=False)
        batch_op.create_index(batch_op.f("ix_beatx_alerts_task_name"), ["task_name"], unique=False)

    op.create_table(
        "beatx_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_beatx_counters")),
    )
    # The change-feed counter exists from the start, so concurrent first writers lock one
    # row instead of racing to insert it.
    op.execute("INSERT INTO beatx_counters (name, value) VALUES ('revision', 0)")
    op.create_table(
        "beatx_instances",
        sa.Column("instance_id", sa.String(length=200), nullable=False),
        sa.Column("started_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("heartbeat_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("is_leader", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_beatx_instances")),
    )
    op.create_table(
        "beatx_locks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("expires_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_beatx_locks")),
    )
    op.create_table(
        "beatx_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("scheduled_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("instance_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("sent_at", celery_beatx.store.types.DateTimeUTC(), nullable=True),
        sa.Column("started_at", celery_beatx.store.types.DateTimeUTC(), nullable=True),
        sa.Column("finished_at", celery_beatx.store.types.DateTimeUTC(), nullable=True),
        sa.Column("runtime", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beatx_runs")),
        sa.UniqueConstraint("task_id", name=op.f("uq_beatx_runs_task_id")),
    )
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.create_index("ix_beatx_runs_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_beatx_runs_task_name_scheduled_at", ["task_name", "scheduled_at"], unique=False
        )

    op.create_table(
        "beatx_task_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beatx_task_versions")),
        sa.UniqueConstraint("task_name", "version", name=op.f("uq_beatx_task_versions_task_name")),
    )
    with op.batch_alter_table("beatx_task_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_beatx_task_versions_task_name"), ["task_name"], unique=False
        )

    op.create_table(
        "beatx_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("expires", sa.Float(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("group_name", sa.String(length=200), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("retry", sa.JSON(), nullable=True),
        sa.Column("alerts", sa.JSON(), nullable=True),
        sa.Column("calendar", sa.JSON(), nullable=True),
        sa.Column("jitter", sa.Float(), nullable=False),
        sa.Column("catchup", sa.String(length=8), nullable=False),
        sa.Column("catchup_limit", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_run_at", celery_beatx.store.types.DateTimeUTC(), nullable=True),
        sa.Column("total_run_count", sa.Integer(), nullable=False),
        sa.Column("next_run_at", celery_beatx.store.types.DateTimeUTC(), nullable=True),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("paused_by", sa.String(length=200), nullable=True),
        sa.Column("paused_at", celery_beatx.store.types.DateTimeUTC(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("created_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.Column("updated_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beatx_tasks")),
        sa.UniqueConstraint("name", name=op.f("uq_beatx_tasks_name")),
    )
    with op.batch_alter_table("beatx_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_beatx_tasks_group_name"), ["group_name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_beatx_tasks_next_run_at"), ["next_run_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_beatx_tasks_revision"), ["revision"], unique=False)

    op.create_table(
        "beatx_tombstones",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", celery_beatx.store.types.DateTimeUTC(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_beatx_tombstones")),
    )
    with op.batch_alter_table("beatx_tombstones", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_beatx_tombstones_revision"), ["revision"], unique=False
        )

    op.create_table(
        "beatx_dependencies",
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("depends_on", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_name"],
            ["beatx_tasks.name"],
            name=op.f("fk_beatx_dependencies_task_name_beatx_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_name", "depends_on", name=op.f("pk_beatx_dependencies")),
    )
    with op.batch_alter_table("beatx_dependencies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_beatx_dependencies_depends_on"), ["depends_on"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("beatx_dependencies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_beatx_dependencies_depends_on"))

    op.drop_table("beatx_dependencies")
    with op.batch_alter_table("beatx_tombstones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_beatx_tombstones_revision"))

    op.drop_table("beatx_tombstones")
    with op.batch_alter_table("beatx_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_beatx_tasks_revision"))
        batch_op.drop_index(batch_op.f("ix_beatx_tasks_next_run_at"))
        batch_op.drop_index(batch_op.f("ix_beatx_tasks_group_name"))

    op.drop_table("beatx_tasks")
    with op.batch_alter_table("beatx_task_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_beatx_task_versions_task_name"))

    op.drop_table("beatx_task_versions")
    with op.batch_alter_table("beatx_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_beatx_runs_task_name_scheduled_at")
        batch_op.drop_index("ix_beatx_runs_status")

    op.drop_table("beatx_runs")
    op.drop_table("beatx_locks")
    op.drop_table("beatx_instances")
    op.drop_table("beatx_counters")
    with op.batch_alter_table("beatx_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_beatx_alerts_task_name"))
        batch_op.drop_index(batch_op.f("ix_beatx_alerts_level"))
        batch_op.drop_index(batch_op.f("ix_beatx_alerts_at"))

    op.drop_table("beatx_alerts")
