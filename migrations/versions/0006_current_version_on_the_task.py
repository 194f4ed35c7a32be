"""The current version's metadata lives on the task row; only superseded versions are
snapshots in ``beatx_task_versions`` (a task at version 1 stores no snapshot at all).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import celery_beatx.store.types
from celery_beatx.migrate import dependency_edges_kept

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("beatx_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version_at", celery_beatx.store.types.DateTimeUTC(),
                                      nullable=True))
        batch_op.add_column(sa.Column("version_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("version_comment", sa.Text(), nullable=True))
    # The stored snapshot of each task's current version says who made it and why.
    op.execute(
        "UPDATE beatx_tasks SET version_at = (SELECT v.created_at FROM beatx_task_versions v "
        "WHERE v.task_name = beatx_tasks.name AND v.version = beatx_tasks.version), "
        "version_by = (SELECT v.created_by FROM beatx_task_versions v "
        "WHERE v.task_name = beatx_tasks.name AND v.version = beatx_tasks.version), "
        "version_comment = (SELECT v.comment FROM beatx_task_versions v "
        "WHERE v.task_name = beatx_tasks.name AND v.version = beatx_tasks.version)")


def downgrade() -> None:
    # Older releases read the current version's snapshot from beatx_task_versions: write
    # the snapshot of every task whose current version has none, before the columns go.
    from sqlalchemy.orm import Session

    from celery_beatx.store.models import Task, TaskVersion, version_stamp
    from celery_beatx.store.rows import definition_of

    session = Session(bind=op.get_bind())
    stored = set(session.execute(sa.select(TaskVersion.task_name, TaskVersion.version)))
    for row in session.scalars(sa.select(Task)):
        if (row.name, row.version) not in stored:
            at, by, comment = version_stamp(row)
            session.add(TaskVersion(
                task_name=row.name, version=row.version, definition=definition_of(row),
                created_at=at, created_by=by, comment=comment))
    session.flush()
    with dependency_edges_kept(op.get_bind()), \
            op.batch_alter_table("beatx_tasks", schema=None) as batch_op:
        for column in ("version_comment", "version_by", "version_at"):
            batch_op.drop_column(column)
