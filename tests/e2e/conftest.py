"""Fixtures for the end-to-end tests: real brokers, real databases, real celery processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BROKERS, Cluster, check_broker, delete_queue

from dbs import fresh_database, unreachable


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(broker, db, **options)`` -> a :class:`Cluster` (no process started).

    ``broker`` is ``"rabbitmq"`` or ``"redis"``; ``db`` is ``"sqlite"``, ``"postgresql"`` or
    ``"mariadb"`` (a fresh database, dropped afterwards).  At teardown every process is
    stopped (SIGTERM, then SIGKILL), the logs are printed (pytest shows them when the test
    failed) and the test's queue is deleted from the shared broker.
    """
    stack = contextlib.ExitStack()
    clusters: list[Cluster] = []

    def make(broker: str, db: str, **options: Any) -> Cluster:
        url = BROKERS[broker]
        error = check_broker(url)
        if error is not None:
            unreachable(broker, error)
        workdir = tmp_path / f"cluster{len(clusters) + 1}"
        workdir.mkdir()
        database_url = stack.enter_context(fresh_database(db, str(workdir)))
        cluster = Cluster(broker_url=url, database_url=database_url, workdir=workdir,
                          **options)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop_all()
        for cluster in clusters:
            cluster.dump_logs()
            delete_queue(cluster.broker_url, cluster.queue)
        stack.close()


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
