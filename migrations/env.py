"""Alembic environment for celery-beatx.

Used programmatically by :mod:`celery_beatx.migrate`: the connection arrives in
``config.attributes["connection"]``.  Only ``beatx_`` tables are considered, and the version
table is ``beatx_alembic_version`` so a host application's own history is left alone.
"""

from __future__ import annotations

from alembic import context

from celery_beatx.store.models import Base

VERSION_TABLE = "beatx_alembic_version"


def _include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table":
        return bool(name) and name.startswith("beatx_") and name != VERSION_TABLE
    return True


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        url = context.config.get_main_option("sqlalchemy.url")
        engine = create_engine(url)
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
        return
    _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("celery-beatx migrations run online only")
run_migrations_online()
