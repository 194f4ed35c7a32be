"""``celery -A e2eapp beatx health`` against a real beat: 0 while it runs, 1 within
2 × beatx_sync_interval + 1 s after it is SIGSTOPped, 0 again after SIGCONT, 1 with a stuck
run."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from harness import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SYNC = 1.0


def health(cluster: Cluster, *args: str) -> tuple[int, str, float]:
    """Run the CLI; returns (exit status, output, when it was started)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "e2eapp", "beatx", "health",
                           *args], cwd=cluster.workdir, env=cluster.env(),
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr, started


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_health_follows_a_frozen_beat_and_a_stuck_run(make_cluster, db):
    cluster = make_cluster("redis", db, schedule={"tick": {"every": 2}}, sync_interval=SYNC)
    beat = cluster.start_beat()
    status, output, _ = health(cluster)
    assert status == 0, output
    status, output, _ = health(cluster, "--json")
    report = json.loads(output)
    assert report["healthy"] is True and report["leader"] is not None
    assert report["instances"][0]["heartbeat_every"] == SYNC

    beat.sigstop()
    frozen_at = time.monotonic()
    time.sleep(2 * SYNC + 1)
    status, output, started = health(cluster)
    assert started - frozen_at <= 2 * SYNC + 1 + 0.5
    assert status == 1, output
    assert "no beat is alive" in output or "no beat is sending" in output, output

    beat.sigcont()
    deadline = time.monotonic() + 20
    while True:
        status, output, _ = health(cluster)
        if status == 0 or time.monotonic() > deadline:
            break
    assert status == 0, output

    # a run marked stuck (as beat marks runs sent or started and not finished in time)
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.begin() as conn:
            updated = conn.execute(sa.text(
                "UPDATE beatx_runs SET status = 'stuck', reason = 'sent and not started "
                "within 2 s' WHERE id = (SELECT min(id) FROM beatx_runs)")).rowcount
    finally:
        engine.dispose()
    assert updated == 1
    status, output, _ = health(cluster)
    assert status == 1 and "stuck" in output, output
    # the per-process liveness probe still passes: this beat is alive
    instance = json.loads(health(cluster, "--json")[1])["instances"][0]["instance_id"]
    status, output, _ = health(cluster, "--instance", instance)
    assert status == 0, output
