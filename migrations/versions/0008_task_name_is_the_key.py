"""A task's name is its primary key: the surrogate ``id`` and its index go.

Every lookup, change and reference (``beatx_dependencies``) is by name; ``id`` was read by
nothing and cost each row 4 bytes plus an index entry (about 23 bytes per task on
PostgreSQL).  SQLite keeps the same size (its ``id`` was the rowid), but the schema is the
same on every database.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from celery_beatx.migrate import dependency_edges_kept

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FK = "fk_beatx_dependencies_task_name_beatx_tasks"
PK = "pk_beatx_tasks"
UQ = "uq_beatx_tasks_name"


def _drop_foreign_key() -> None:
    """Drop the edges' foreign key, if it is there: MySQL and MariaDB commit each DDL
    statement, so a run that failed after dropping it is run again without it."""
    names = {fk["name"] for fk in sa.inspect(op.get_bind()).get_foreign_keys(
        "beatx_dependencies")}
    if FK in names:
        op.drop_constraint(FK, "beatx_dependencies", type_="foreignkey")


def _dialect() -> str:
    return op.get_bind().dialect.name


def upgrade() -> None:
    dialect = _dialect()
    if dialect == "sqlite":
        with dependency_edges_kept(op.get_bind()), \
                op.batch_alter_table("beatx_tasks", recreate="always") as batch_op:
            batch_op.drop_constraint(UQ, type_="unique")
            batch_op.drop_column("id")
            batch_op.create_primary_key(PK, ["name"])
        return
    _drop_foreign_key()
    if dialect in ("mysql", "mariadb"):
        # The AUTO_INCREMENT column must lose its key in the statement that drops it.
        op.execute(f"ALTER TABLE beatx_tasks DROP PRIMARY KEY, DROP COLUMN id, "
                   f"DROP INDEX {UQ}, ADD CONSTRAINT {PK} PRIMARY KEY (name)")
    else:
        op.drop_constraint(PK, "beatx_tasks", type_="primary")
        op.drop_column("beatx_tasks", "id")
        op.drop_constraint(UQ, "beatx_tasks", type_="unique")
        op.create_primary_key(PK, "beatx_tasks", ["name"])
    op.create_foreign_key(FK, "beatx_dependencies", "beatx_tasks", ["task_name"], ["name"],
                          ondelete="CASCADE")


def downgrade() -> None:
    dialect = _dialect()
    if dialect == "sqlite":
        with dependency_edges_kept(op.get_bind()):
            with op.batch_alter_table("beatx_tasks", recreate="always") as batch_op:
                batch_op.drop_constraint(PK, type_="primary")
                batch_op.add_column(sa.Column("id", sa.Integer(), nullable=True))
                batch_op.create_unique_constraint(UQ, ["name"])
            # The column comes back plain, numbered like the rows, then becomes the key.
            op.execute("UPDATE beatx_tasks SET id = rowid")
            with op.batch_alter_table("beatx_tasks", recreate="always") as batch_op:
                batch_op.alter_column("id", existing_type=sa.Integer(), nullable=False)
                batch_op.create_primary_key(PK, ["id"])
        return
    _drop_foreign_key()
    if dialect in ("mysql", "mariadb"):
        op.execute(f"ALTER TABLE beatx_tasks DROP PRIMARY KEY, "
                   f"ADD COLUMN id INTEGER NOT NULL AUTO_INCREMENT FIRST, "
                   f"ADD CONSTRAINT {PK} PRIMARY KEY (id), ADD CONSTRAINT {UQ} UNIQUE (name)")
    else:
        op.drop_constraint(PK, "beatx_tasks", type_="primary")
        op.execute("ALTER TABLE beatx_tasks ADD COLUMN id SERIAL")
        op.create_primary_key(PK, "beatx_tasks", ["id"])
        op.create_unique_constraint(UQ, "beatx_tasks", ["name"])
    op.create_foreign_key(FK, "beatx_dependencies", "beatx_tasks", ["task_name"], ["name"],
                          ondelete="CASCADE")
