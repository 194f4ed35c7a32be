"""Fixtures for the end-to-end tests: real brokers, real databases, real celery processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BROKERS, Cluster, check_broker, delete_queue
from services import MissingServer, PrivatePostgres, PrivateRedis

from dbs import IN_CI, fresh_database, unreachable


@pytest.fixture
def make_cluster(tmp_path: Path, private_redis: Callable[..., PrivateRedis]
                 ) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(broker, db, **options)`` -> a :class:`Cluster` (no process started).

    ``broker`` is ``"rabbitmq"`` or ``"redis"`` (the shared servers) or a
    :class:`~services.PrivateRedis`; ``db`` is ``"sqlite"``, ``"postgresql"`` or
    ``"mariadb"`` or a :class:`~services.PrivatePostgres` (a fresh database, dropped
    afterwards).  At teardown every process is stopped (SIGTERM, then SIGKILL), the logs are
    printed (pytest shows them when the test failed) and the test's queue is deleted from
    the shared broker.  (It depends on ``private_redis`` only so that private brokers outlive
    the processes using them.)
    """
    stack = contextlib.ExitStack()
    clusters: list[Cluster] = []
    shared: set[int] = set()

    def make(broker: str | PrivateRedis, db: str | PrivatePostgres,
             **options: Any) -> Cluster:
        url = broker.url() if isinstance(broker, PrivateRedis) else BROKERS[broker]
        error = check_broker(url)
        if error is not None:
            unreachable(str(broker), error)
        workdir = tmp_path / f"cluster{len(clusters) + 1}"
        workdir.mkdir()
        if isinstance(db, PrivatePostgres):
            database_url = stack.enter_context(db.fresh_database())
        else:
            database_url = stack.enter_context(fresh_database(db, str(workdir)))
        cluster = Cluster(broker_url=url, database_url=database_url, workdir=workdir,
                          **options)
        if not isinstance(broker, PrivateRedis):
            shared.add(id(cluster))
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop_all()
        for cluster in clusters:
            cluster.dump_logs()
            if id(cluster) in shared:  # a private broker goes away with its files
                delete_queue(cluster.broker_url, cluster.queue)
        stack.close()


def missing_server(exc: Exception) -> None:
    """A server binary the fault tests need is not installed: fail in CI, skip elsewhere."""
    message = f"cannot run a private server: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def private_postgres_server() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL cluster for the session (``initdb`` is paid once).

    Use :func:`private_postgres` in tests: it restarts the server if a test stopped it.
    """
    try:
        server = PrivatePostgres.create()
    except MissingServer as exc:
        missing_server(exc)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def private_postgres(private_postgres_server: PrivatePostgres) -> Iterator[PrivatePostgres]:
    """The session's private PostgreSQL, running; a test may stop it (an outage), it is
    started again afterwards.  Pass it as ``db`` to ``make_cluster`` for a fresh database."""
    server = private_postgres_server
    if not server.running():
        server.start()
    try:
        yield server
    finally:
        if not server.running():
            server.start()


@pytest.fixture
def private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    """``private_redis(persist=False)`` -> a started :class:`~services.PrivateRedis` of this
    test's own; killed and deleted at teardown.  Pass it as ``broker`` to ``make_cluster``."""
    servers: list[PrivateRedis] = []

    def make(persist: bool = False) -> PrivateRedis:
        try:
            server = PrivateRedis.create(persist=persist)
        except MissingServer as exc:
            missing_server(exc)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def admin_for() -> Iterator[Callable[[Cluster], Any]]:
    """``admin_for(cluster)`` -> a :class:`~celery_beatx.BeatAdmin` on its database."""
    from celery_beatx import BeatAdmin

    admins: list[Any] = []

    def make(cluster: Cluster) -> Any:
        admin = BeatAdmin(url=cluster.database_url)
        admins.append(admin)
        return admin

    try:
        yield make
    finally:
        for admin in admins:
            admin.engine.dispose()
