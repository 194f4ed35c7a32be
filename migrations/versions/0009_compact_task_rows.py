"""Compact task rows: a crontab is stored without its ``"*"`` fields, and a task at
version 1 stores neither its version time (it is ``created_at``) nor its version comment
(it is ``'created'``).

The schema does not change.  The revision exists so that a release from before it, which
reads every crontab field and a version-1 row's stamp from the row, does not start on a
database written by this one instead of misreading it (``SchemaOutOfDate`` with
``beatx_auto_migrate`` off; with it on, Alembic cannot find revision 0009).  Going up rewrites
existing rows in the compact form (rows left as they were read the same; this only makes
them smaller); going down writes every row in the full form again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 14:00:00
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from celery_beatx.store.models import CREATED_COMMENT
from celery_beatx.store.types import (
    Undecodable,
    compact_schedule,
    expand_schedule,
    tolerant_json_loads,
)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: Rows rewritten per statement (and per page read).
BATCH = 2_000

TASKS = sa.table("beatx_tasks", sa.column("name", sa.String()),
                 sa.column("schedule", sa.JSON()), sa.column("version", sa.Integer()),
                 sa.column("version_at"), sa.column("version_comment", sa.Text()),
                 sa.column("created_at"))


def _rewrite_schedules(change: Callable[[Any], Any]) -> None:
    """``schedule = change(schedule)`` on every task row holding a crontab, a page of
    rows (by name) at a time, one ``executemany`` per page."""
    bind = op.get_bind()
    # Read as text and decoded here: a row whose JSON is broken is left as it is (beat
    # marks it invalid), whichever engine, and JSON decoder, runs the migration.
    text = sa.cast(TASKS.c.schedule, sa.Text())
    holds_crontab = text.like('%"crontab"%')
    update = (TASKS.update().where(TASKS.c.name == sa.bindparam("key"))
              .values(schedule=sa.bindparam("value", type_=sa.JSON())))
    after = ""
    while True:
        page = bind.execute(
            sa.select(TASKS.c.name, text)
            .where(holds_crontab, TASKS.c.name > after)
            .order_by(TASKS.c.name).limit(BATCH)).all()
        if not page:
            return
        changed = []
        for name, raw in page:
            value = tolerant_json_loads(raw)
            if isinstance(value, Undecodable):
                continue
            new = change(value)
            if new != value:
                changed.append({"key": name, "value": new})
        if changed:
            bind.execute(update, changed)
        after = page[-1][0]


def upgrade() -> None:
    _rewrite_schedules(compact_schedule)
    first = TASKS.c.version == 1
    op.execute(TASKS.update().where(first, TASKS.c.version_at == TASKS.c.created_at)
               .values(version_at=None))
    op.execute(TASKS.update().where(first, TASKS.c.version_comment == CREATED_COMMENT)
               .values(version_comment=None))


def downgrade() -> None:
    _rewrite_schedules(expand_schedule)
    first = TASKS.c.version == 1
    op.execute(TASKS.update().where(first, TASKS.c.version_at.is_(None))
               .values(version_at=TASKS.c.created_at))
    op.execute(TASKS.update().where(first, TASKS.c.version_comment.is_(None))
               .values(version_comment=CREATED_COMMENT))
