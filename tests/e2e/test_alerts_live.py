"""Alerts from a real beat to a webhook receiver the test runs on 127.0.0.1.

Beat runs ``celery_beatx.Scheduler``, the worker tracks outcomes (``celery_beatx.track``).
A beat that was down misses occurrences: on restart its catch-up run
raises one ``missed_schedule`` alert, which reaches the receiver (down at first, up later)
with the documented JSON, once; the secret header value appears in no log line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from harness import wait_for

from celery_beatx import AlertConfig, every

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_webhooks import Receiver, free_port  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SECRET = "e2e-Bearer-7d1f3a9c"
SCHEDULER = "celery_beatx.Scheduler"


@pytest.mark.parametrize("db", ["postgresql"])
def test_missed_schedule_reaches_a_webhook_that_comes_back(make_cluster, admin_for, db):
    port = free_port()
    hooks = [{"url": f"http://127.0.0.1:{port}/alerts", "min_level": "warning",
              "headers": {"Authorization": f"Bearer {SECRET}"}, "timeout": 2}]
    cluster = make_cluster("redis", db, sync_interval=1.0,
                           extra_env={"E2E_ALERT_WEBHOOKS": json.dumps(hooks)})
    admin = admin_for(cluster)
    beat = cluster.start_beat(SCHEDULER)
    admin.add("every2", "e2eapp.mark", every(2), args=["every2"],
              alerts=AlertConfig(consecutive_failures=None, failure_rate=None))
    wait_for(lambda: admin.history("every2"), 20, "a first send")
    assert beat.stop() == 0
    time.sleep(7)  # three occurrences pass while beat is down
    beat2 = cluster.start_beat(SCHEDULER)
    alerts = wait_for(lambda: [a for a in admin.alerts() if a.kind == "missed_schedule"], 20,
                      "the missed_schedule alert to be stored")
    assert len(alerts) == 1 and alerts[0].task_name == "every2"
    time.sleep(2)  # the receiver is down: the sender retries in the background
    receiver = Receiver(port=port)
    try:
        wait_for(receiver.delivered, 30, "the webhook delivery")
        time.sleep(3)  # nothing else arrives: one alert, delivered once
        kinds = [r["json"]["kind"] for r in receiver.delivered()]
    finally:
        receiver.close()
    assert kinds == ["missed_schedule"], receiver.received
    body = receiver.delivered()[0]["json"]
    assert set(body) == {"format", "id", "level", "kind", "task_name", "message", "at", "data",
                         "instance"}
    assert (body["format"], body["level"], body["task_name"], body["id"]) == (
        "celery-beatx-alert/1", "warning", "every2", alerts[0].id)
    assert body["data"]["late"] >= 1
    assert receiver.delivered()[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert beat2.stop() == 0
    for proc in (beat, beat2):
        assert SECRET not in proc.output()
    assert "cannot be reached" in beat2.output()


@pytest.mark.parametrize("broker", ["redis"])
def test_three_failures_raise_one_alert_received_once_then_resolved(make_cluster, admin_for,
                                                                    broker):
    """A task failing 3 times in a row raises one consecutive_failures alert (not 3),
    received once by the webhook; a success afterwards sends the resolution."""
    receiver = Receiver()
    try:
        hooks = [{"url": receiver.url("/alerts"), "headers": {"X-Token": SECRET}}]
        cluster = make_cluster(broker, "postgresql", sync_interval=1.0,
                               extra_env={"E2E_ALERT_WEBHOOKS": json.dumps(hooks)})
        admin = admin_for(cluster)
        cluster.start_worker()
        beat = cluster.start_beat(SCHEDULER)
        admin.add("flaky", "e2eapp.fail", every(1), args=["flaky"],
                  alerts=AlertConfig(consecutive_failures=3, failure_rate=None))
        wait_for(lambda: len([r for r in admin.history("flaky", 50)
                              if r.status == "failed"]) >= 6, 60, "six failures")
        admin.update("flaky", task="e2eapp.mark")
        wait_for(lambda: any(r["json"]["kind"] == "resolved" for r in receiver.delivered()),
                 60, "the resolution")
        kinds = [r["json"]["kind"] for r in receiver.delivered()]
        assert kinds == ["consecutive_failures", "resolved"], kinds
        assert [a.kind for a in admin.alerts(task="flaky")] == ["resolved",
                                                                 "consecutive_failures"]
        assert beat.stop() == 0
        assert SECRET not in beat.output()
    finally:
        receiver.close()
