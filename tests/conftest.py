"""Shared fixtures: storage tests run once per backend against the real servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from dbs import fresh_database, truncate_all

#: The ``app`` and ``queue_name`` fixtures of in-process scheduler tests.
pytest_plugins = ["beat_helpers"]

BACKENDS = ("sqlite", "postgresql", "mariadb")
UTC = timezone.utc


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    """One migrated database per backend for the whole session."""
    from celery_beatx import migrate
    from celery_beatx.store.engine import make_engine

    with fresh_database(request.param, str(tmp_path_factory.mktemp("db"))) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture
def db_url(migrated_db: str) -> str:
    """A migrated, empty database (each test starts with no rows)."""
    truncate_all(migrated_db)
    return migrated_db


@pytest.fixture
def empty_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A brand-new empty database (no schema) on the backend given by indirect param."""
    with fresh_database(request.param, str(tmp_path)) as url:
        yield url


class FakeClock:
    """An injected clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def admin(db_url: str, clock: FakeClock):  # type: ignore[no-untyped-def]
    from celery_beatx import BeatAdmin

    adm = BeatAdmin(url=db_url, clock=clock)
    yield adm
    adm.engine.dispose()
