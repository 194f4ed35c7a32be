"""The fault tests' own servers work: they start, stop and come back, and a real beat and
worker deliver through them.

These pass against any celery-beatx that delivers at all; if one fails, the fault tests'
results mean nothing.
"""

from __future__ import annotations

import time

import pytest
import redis
import sqlalchemy as sa
from faults import engine_for
from services import port_open

from celery_beatx import every

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_private_postgres_stops_and_restarts_on_its_port(private_postgres):
    server = private_postgres
    assert server.port != 5432
    with server.fresh_database() as url, engine_for(url) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        kept = sa.create_engine(url)  # a pooled connection that the outage breaks
        with kept.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        server.stop("immediate")
        assert not server.running() and not port_open(server.port)
        with pytest.raises(sa.exc.OperationalError):
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        server.start()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar_one() == 1
        with pytest.raises(sa.exc.OperationalError), kept.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        kept.dispose()


@pytest.mark.parametrize("persist", [False, True], ids=["memory", "append-only"])
def test_private_redis_restarts_on_the_same_port(private_redis, persist):
    server = private_redis(persist=persist)
    assert server.port != 6379
    client = redis.Redis.from_url(server.url(), socket_timeout=2, socket_connect_timeout=2)
    try:
        client.rpush("q", "kept")
        port = server.port
        server.stop()
        assert not server.running() and not port_open(port)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port
        # The same client reconnects; only the append-only server kept its data.
        assert client.lrange("q", 0, -1) == ([b"kept"] if persist else [])
    finally:
        client.close()


def test_beat_on_private_postgres_and_worker_on_private_redis_deliver(
        private_redis, private_postgres, make_cluster, admin_for):
    broker = private_redis()
    cluster = make_cluster(broker, private_postgres)
    assert str(private_postgres.port) in cluster.database_url
    assert str(broker.port) in cluster.broker_url
    admin = admin_for(cluster)
    cluster.start_worker()
    beat = cluster.start_beat()
    admin.add("tick", "e2eapp.mark", every(seconds=1), args=["tick"])
    markers = cluster.wait_markers(3, timeout=20, entry="tick")
    assert [m.label for m in markers[:3]] == ["tick"] * 3
    with engine_for(cluster.database_url) as engine, engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT COUNT(*) FROM beatx_runs")).scalar_one()
    assert rows >= 3
    assert beat.stop() == 0
    # The private broker can go away and come back under a running worker.
    broker.stop()
    time.sleep(1)
    broker.start()
    assert broker.running()
