"""Real test databases: one fresh database per backend per test run (no mocks)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_ADMIN = os.environ.get("BEATX_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MY_ADMIN = os.environ.get("BEATX_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
SERVERS = {"postgresql": PG_ADMIN, "mariadb": MY_ADMIN}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unreachable(backend: str, exc: Exception) -> None:
    """A missing server fails the run in CI and skips the test elsewhere."""
    message = f"{backend} server is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def fresh_database(backend: str, tmp_dir: str) -> Iterator[str]:
    """Create an empty database for this run, yield its URL, drop it afterwards."""
    name = f"beatx_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        yield f"sqlite:///{os.path.join(tmp_dir, name)}.sqlite3"
        return
    admin_url = SERVERS[backend]
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        unreachable(backend, exc)
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(
        hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def truncate_all(url: str) -> None:
    """Empty every beatx_ table but the Alembic version table."""
    from celery_beatx.store.models import Base, Counter

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        # as the migration leaves it
        conn.execute(sa.insert(Counter).values(name="revision", value=0))
        conn.execute(sa.insert(Counter).values(name="runs", value=0))
    engine.dispose()
