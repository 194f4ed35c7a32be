"""Prometheus metrics: served by prometheus_client, scraped and parsed by its parser."""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta, timezone

from celery_beatx import every
from celery_beatx.alerts import Alert, dispatch

UTC = timezone.utc


def scrape(port: int) -> dict[str, list]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples, name, **labels):  # noqa: ANN001, ANN201
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"{name} {labels} not in {samples}")


def test_metrics_endpoint_serves_the_documented_series(admin):
    from celery_beatx.metrics import BeatMetrics

    admin.add("a", "t.a", every(60))
    admin.add("b", "t.b", every(60), enabled=False)
    with admin.repo.transaction() as session:
        admin.repo.mark_invalid(session, {"a": "broken"})
    admin.add("c", "t.c", every(60))
    metrics = BeatMetrics(admin.repo)
    port = metrics.start(0, "127.0.0.1")
    try:
        now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        metrics.observe_send("sent", now - timedelta(seconds=2), now)
        metrics.observe_send("sent", now, now)
        metrics.observe_send("broker", now, now)
        metrics.observe_send("failed", now, now)
        with metrics.timed_tick():
            pass
        metrics.observe_poll()
        metrics.set_role("leader")
        dispatch(Alert("critical", "consecutive_failures", "a", "m", now))
        families = scrape(port)
    finally:
        metrics.close()
    assert value(families["beatx_tasks"], "beatx_tasks", state="active") == 1
    assert value(families["beatx_tasks"], "beatx_tasks", state="invalid") == 1
    assert value(families["beatx_tasks"], "beatx_tasks", state="disabled") == 1
    assert value(families["beatx_tasks"], "beatx_tasks", state="paused") == 0
    assert value(families["beatx_sends"], "beatx_sends_total") == 2
    failures = families["beatx_send_failures"]
    assert value(failures, "beatx_send_failures_total", reason="broker_unreachable") == 1
    assert value(failures, "beatx_send_failures_total", reason="error") == 1
    lateness = families["beatx_send_lateness_seconds"]
    assert value(lateness, "beatx_send_lateness_seconds_count") == 2
    assert value(lateness, "beatx_send_lateness_seconds_sum") == 2.0
    assert value(lateness, "beatx_send_lateness_seconds_bucket", le="1.0") == 1
    assert value(families["beatx_tick_duration_seconds"],
                 "beatx_tick_duration_seconds_count") == 1
    assert 0 <= value(families["beatx_change_feed_lag_seconds"],
                      "beatx_change_feed_lag_seconds") < 5
    assert value(families["beatx_leader"], "beatx_leader") == 1
    assert value(families["beatx_alerts"], "beatx_alerts_total",
                 kind="consecutive_failures", level="critical") == 1
