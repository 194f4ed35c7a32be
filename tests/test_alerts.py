"""Alert rules: AlertConfig validation, the pure judge, and the engine on real databases."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from celery import Celery

import celery_beatx
from celery_beatx import AlertConfig, InvalidSchedule, every
from celery_beatx.alerts import Alert, on_alert, remove_handler
from celery_beatx.beat.alerting import AlertEngine, TaskNews, judge
from celery_beatx.config import BeatxConfig
from celery_beatx.store.models import Alert as AlertRow

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- AlertConfig -------------------------------------------------------------------------------


def test_alert_config_defaults_and_dict_form_round_trip():
    config = AlertConfig()
    assert config.to_dict() == {"consecutive_failures": 3, "failure_rate": 0.5, "window": 20,
                                "slow_seconds": None, "missed_schedule": True,
                                "stuck_seconds": None}
    assert AlertConfig.from_dict(config.to_dict()) == config
    assert AlertConfig.from_dict({"slow_seconds": timedelta(minutes=2)}).slow_seconds == 120.0
    assert celery_beatx.AlertConfig is AlertConfig


@pytest.mark.parametrize(("data", "field"), [
    ({"consecutive_failure": 3}, "alerts.consecutive_failure"),
    ({"consecutive_failures": 0}, "alerts.consecutive_failures"),
    ({"consecutive_failures": True}, "alerts.consecutive_failures"),
    ({"failure_rate": 1.5}, "alerts.failure_rate"),
    ({"failure_rate": 0}, "alerts.failure_rate"),
    ({"failure_rate": "half"}, "alerts.failure_rate"),
    ({"window": None}, "alerts.window"),
    ({"window": 1001}, "alerts.window"),
    ({"slow_seconds": -1}, "alerts.slow_seconds"),
    ({"slow_seconds": float("nan")}, "alerts.slow_seconds"),
    ({"missed_schedule": "yes"}, "alerts.missed_schedule"),
    ({"stuck_seconds": 0}, "alerts.stuck_seconds"),
])
def test_alert_config_refuses_bad_values_naming_the_field(data, field):
    with pytest.raises(InvalidSchedule) as caught:
        AlertConfig.from_dict(data)
    assert caught.value.field == field
    key = field.split(".")[1]
    assert key in str(caught.value)


def test_alert_config_constructor_validates_too():
    with pytest.raises(InvalidSchedule, match="alerts.window"):
        AlertConfig(window=0)


def test_add_update_and_import_validate_alerts_and_write_nothing_when_bad(admin):
    admin.add("a", "t.a", every(60), alerts=AlertConfig(consecutive_failures=5))
    assert admin.get("a").alerts["consecutive_failures"] == 5
    admin.add("b", "t.b", every(60), alerts={"slow_seconds": 30})
    assert admin.get("b").alerts == AlertConfig(slow_seconds=30).to_dict()
    with pytest.raises(InvalidSchedule) as caught:
        admin.add("c", "t.c", every(60), alerts={"slow": 30})
    assert caught.value.field == "alerts.slow"
    with pytest.raises(InvalidSchedule, match="failure_rate"):
        admin.update("a", alerts={"failure_rate": 2})
    assert admin.get("a").alerts["failure_rate"] == 0.5 and admin.get("a").version == 1
    assert [t.name for t in admin.list()] == ["a", "b"]
    doc = json.loads(admin.export_state())
    doc["tasks"][0]["alerts"] = {"window": "twenty"}
    with pytest.raises(InvalidSchedule, match="alerts.window"):
        admin.import_state(json.dumps(doc), mode="merge")
    assert admin.get("a").alerts["window"] == 20


def _app(**conf):
    app = Celery("alerts_config", set_as_current=False)
    app.conf.update(beatx_database_url="sqlite://", **conf)
    return app


def test_settings_are_validated_at_config_load():
    config = BeatxConfig.from_app(_app(
        beatx_default_alerts={"consecutive_failures": 2},
        beatx_alert_webhooks=[{"url": "https://hooks.example/x", "min_level": "critical",
                               "headers": {"Authorization": "Bearer s3cret"},
                               "timeout": 2}]))
    assert config.default_alerts == AlertConfig(consecutive_failures=2)
    hook = config.alert_webhooks[0]
    assert (hook.url, hook.min_level, hook.timeout) == ("https://hooks.example/x", "critical",
                                                        2.0)
    assert "s3cret" not in repr(hook)
    with pytest.raises(InvalidSchedule) as caught:
        BeatxConfig.from_app(_app(beatx_default_alerts={"windw": 3}))
    assert caught.value.field == "beatx_default_alerts.windw"
    bad_hooks = [
        ([{"url": "ftp://x/y"}], "beatx_alert_webhooks[0].url"),
        ([{"url": "https://x/y", "min_level": "loud"}], "beatx_alert_webhooks[0].min_level"),
        ([{"url": "https://x/y", "timeout": 0}], "beatx_alert_webhooks[0].timeout"),
        ([{"url": "https://x/y", "headers": {"X": 1}}], "beatx_alert_webhooks[0].headers"),
        ([{"url": "https://x/y", "secret": "1"}], "beatx_alert_webhooks[0].secret"),
        ({"url": "https://x/y"}, "beatx_alert_webhooks"),
    ]
    for value, field in bad_hooks:
        with pytest.raises(InvalidSchedule) as caught:
            BeatxConfig.from_app(_app(beatx_alert_webhooks=value))
        assert caught.value.field == field, value
    with pytest.raises(InvalidSchedule) as caught:
        BeatxConfig.from_app(_app(beatx_alert_webhooks=[
            {"url": "https://x/y", "headers": {"Authorization": "tok\nen-SECRET"}}]))
    assert "SECRET" not in str(caught.value)
    with pytest.raises(InvalidSchedule, match="beatx_metrics_port"):
        BeatxConfig.from_app(_app(beatx_metrics_port="9100"))
    with pytest.raises(InvalidSchedule, match="beatx_alert_cooldown"):
        BeatxConfig.from_app(_app(beatx_alert_cooldown=-1))


# -- judge (pure) ------------------------------------------------------------------------------


def outcome(status, runtime=1.0, error=None, task_id="x"):
    return SimpleNamespace(status=status, finished_at=T0, runtime=runtime, error=error,
                           task_id=task_id)


def test_judge_consecutive_failures_once_then_resolved_by_a_success():
    config = AlertConfig()
    failed = [outcome("failed", error="boom")] * 3
    verdict = judge("t", config, TaskNews(finished=failed[:1]), failed, (), T0)
    assert [a.kind for a in verdict.raise_] == ["consecutive_failures"]
    assert verdict.raise_[0].level == "critical" and "boom" in verdict.raise_[0].message
    # already open: nothing new
    assert not judge("t", config, TaskNews(finished=failed[:1]), failed * 2,
                     {"consecutive_failures"}, T0).raise_
    # two failures are not enough
    assert not judge("t", config, TaskNews(finished=failed[:1]), failed[:2], (), T0).raise_
    ok = [outcome("succeeded")] + failed
    verdict = judge("t", config, TaskNews(finished=ok[:1]), ok, {"consecutive_failures"}, T0)
    assert verdict.resolve == {"consecutive_failures": "a run succeeded"}
    assert not verdict.raise_


def test_judge_failure_rate_needs_a_full_window():
    config = AlertConfig(consecutive_failures=None, failure_rate=0.5, window=4)
    mixed = [outcome(s) for s in ("failed", "succeeded", "failed", "succeeded")]
    verdict = judge("t", config, TaskNews(finished=mixed[:1]), mixed, (), T0)
    assert [a.kind for a in verdict.raise_] == ["failure_rate"]
    assert verdict.raise_[0].data["rate"] == 0.5
    assert not judge("t", config, TaskNews(finished=mixed[:1]), mixed[:3], (), T0).raise_
    better = [outcome(s) for s in ("succeeded", "succeeded", "failed", "succeeded")]
    verdict = judge("t", config, TaskNews(finished=better[:1]), better, {"failure_rate"}, T0)
    assert "failure_rate" in verdict.resolve


def test_judge_slow_missed_stuck_send_failed_and_no_rules():
    config = AlertConfig(consecutive_failures=None, failure_rate=None, slow_seconds=10)
    slow = [outcome("succeeded", runtime=12.5, task_id="r1")]
    verdict = judge("t", config, TaskNews(finished=slow), slow, (), T0)
    assert [(a.kind, a.level, a.data["task_id"]) for a in verdict.raise_] == [
        ("slow_execution", "warning", "r1")]
    fast = [outcome("succeeded", runtime=2)]
    assert judge("t", config, TaskNews(finished=fast), fast, {"slow_execution"},
                 T0).resolve.keys() == {"slow_execution"}
    missed = [SimpleNamespace(kind="catchup", scheduled_at=T0, reason=None),
              SimpleNamespace(kind="skipped", scheduled_at=T0 - timedelta(minutes=1),
                              reason="missed (catchup='skip')")]
    verdict = judge("t", config, TaskNews(missed=missed), [], (), T0)
    assert [a.kind for a in verdict.raise_] == ["missed_schedule"]
    assert verdict.raise_[0].data == {"late": 1, "skipped": 1,
                                      "first_missed": (T0 - timedelta(minutes=1)).isoformat()}
    assert not judge("t", AlertConfig(missed_schedule=False), TaskNews(missed=missed), [], (),
                     T0).raise_
    assert not judge("t", None, TaskNews(missed=missed), [], (), T0).raise_
    flagged = [SimpleNamespace(status="stuck", task_id="s1", reason="sent and not started"),
               SimpleNamespace(status="send_failed", task_id="s2", error="TypeError: x")]
    verdict = judge("t", None, TaskNews(flagged=flagged), [], (), T0)
    assert sorted(a.kind for a in verdict.raise_) == ["send_failed", "stuck_task"]
    assert not judge("t", None, TaskNews(flagged=flagged), [], {"stuck_task", "send_failed"},
                     T0).raise_


# -- the engine on real databases -------------------------------------------------------------


def run(name, task_id, status, finished_at=None, *, created_at=None, kind="scheduled",
        runtime=1.0, error=None, reason=None):
    return {"task_name": name, "task_id": task_id, "scheduled_at": created_at or T0,
            "attempt": 0, "status": status, "kind": kind, "created_at": created_at or T0,
            "finished_at": finished_at, "runtime": runtime if finished_at else None,
            "error": error, "reason": reason}


def add_runs(admin, *runs):
    with admin.repo.transaction() as session:
        admin.repo.add_runs(session, list(runs))


@pytest.fixture
def raised():
    seen: list[Alert] = []
    handler = on_alert(seen.append)
    yield seen
    remove_handler(handler)


def test_three_failures_raise_one_alert_then_a_success_resolves_it(admin, clock, raised):
    admin.add("nightly", "t.n", every(60), alerts=AlertConfig())
    engine = AlertEngine(admin.repo)
    now = clock.advance(minutes=1)
    add_runs(admin, *[run("nightly", f"f{i}", "failed", now + timedelta(seconds=i),
                          error="ValueError: no data") for i in range(3)])
    found = engine.evaluate(now + timedelta(seconds=5))
    assert [(a.kind, a.level, a.task_name) for a in found] == [
        ("consecutive_failures", "critical", "nightly")]
    assert found[0].id is not None and raised == found
    # more failures, later evaluations: still one alert
    add_runs(admin, run("nightly", "f3", "failed", now + timedelta(seconds=6)))
    assert engine.evaluate(now + timedelta(seconds=7)) == []
    assert engine.evaluate(now + timedelta(seconds=8)) == []
    add_runs(admin, run("nightly", "ok", "succeeded", now + timedelta(seconds=9)))
    resolved = engine.evaluate(now + timedelta(seconds=10))
    assert [(a.kind, a.level) for a in resolved] == [("resolved", "info")]
    assert resolved[0].data["resolves"] == ["consecutive_failures"]
    stored = admin.alerts(task="nightly")
    assert [a.kind for a in stored] == ["resolved", "consecutive_failures"]
    assert stored[1].resolved_at == now + timedelta(seconds=10)
    assert [a.kind for a in admin.alerts(level="critical")] == ["consecutive_failures"]
    assert admin.alerts(since=now + timedelta(seconds=9))[0].kind == "resolved"
    # a new streak within the cooldown is not raised; after it, it is
    add_runs(admin, *[run("nightly", f"g{i}", "failed", now + timedelta(seconds=20 + i))
                      for i in range(3)])
    assert engine.evaluate(now + timedelta(seconds=25)) == []
    later = now + timedelta(minutes=11)
    add_runs(admin, run("nightly", "g9", "failed", later))
    assert [a.kind for a in engine.evaluate(later + timedelta(seconds=1))] == [
        "consecutive_failures"]


def test_a_new_engine_does_not_raise_again_what_another_raised(admin, clock):
    admin.add("t", "t.t", every(60), alerts={"consecutive_failures": 2, "failure_rate": None})
    now = clock.advance(minutes=1)
    add_runs(admin, run("t", "a", "failed", now), run("t", "b", "failed",
                                                       now + timedelta(seconds=1)))
    assert len(AlertEngine(admin.repo).evaluate(now + timedelta(seconds=2))) == 1
    # another beat takes over and looks back: the alert is open and in its cooldown
    assert AlertEngine(admin.repo).evaluate(now + timedelta(seconds=3)) == []
    assert len(admin.alerts()) == 1


def test_default_alerts_apply_to_tasks_without_their_own(admin, clock):
    admin.add("plain", "t.p", every(60))
    admin.add("quiet", "t.q", every(60), alerts={"consecutive_failures": None,
                                                  "failure_rate": None})
    now = clock.advance(minutes=1)
    add_runs(admin, *[run(n, f"{n}{i}", "failed", now + timedelta(seconds=i))
                      for n in ("plain", "quiet") for i in range(3)])
    assert AlertEngine(admin.repo).evaluate(now + timedelta(seconds=5)) == []
    engine = AlertEngine(admin.repo, default_alerts=AlertConfig(consecutive_failures=3))
    assert [a.task_name for a in engine.evaluate(now + timedelta(seconds=6))] == ["plain"]


def test_missed_stuck_and_send_failed_runs_raise_their_alerts(admin, clock):
    admin.add("late", "t.l", every(60), alerts=AlertConfig())
    admin.add("hung", "t.h", every(60))
    engine = AlertEngine(admin.repo)
    now = clock.advance(minutes=1)
    assert engine.evaluate(now) == []
    add_runs(admin,
             run("late", "c1", "sent", created_at=now + timedelta(seconds=1), kind="catchup"),
             run("late", "s1", "skipped", created_at=now + timedelta(seconds=1),
                 kind="skipped", reason="missed (catchup='skip')"),
             run("hung", "h1", "stuck", created_at=now, reason="sent and not started "
                 "within 30 s"),
             run("hung", "h2", "send_failed", created_at=now, error="EncodeError: nope"))
    found = {(a.kind, a.task_name): a for a in engine.evaluate(now + timedelta(seconds=2))}
    assert set(found) == {("missed_schedule", "late"), ("stuck_task", "hung"),
                          ("send_failed", "hung")}
    assert found[("missed_schedule", "late")].data["skipped"] == 1
    assert "EncodeError" in found[("send_failed", "hung")].message
    assert engine.evaluate(now + timedelta(seconds=3)) == []
    # a success of the hung task resolves both of its condition alerts in one alert
    add_runs(admin, run("hung", "ok", "succeeded", now + timedelta(seconds=4)))
    resolved = engine.evaluate(now + timedelta(seconds=5))
    assert [(a.kind, a.data["resolves"]) for a in resolved] == [
        ("resolved", ["send_failed", "stuck_task"])]


def test_an_outcome_written_late_within_the_margin_is_still_judged(admin, clock):
    admin.add("t", "t.t", every(60), alerts={"consecutive_failures": 1, "failure_rate": None})
    engine = AlertEngine(admin.repo)
    now = clock.advance(minutes=1)
    add_runs(admin, run("t", "ok", "succeeded", now))
    assert engine.evaluate(now + timedelta(seconds=1)) == []
    # a worker whose clock is 10 s behind reports a failure after the watermark moved on
    add_runs(admin, run("t", "late", "failed", now - timedelta(seconds=10)))
    add_runs(admin, run("t", "new", "failed", now + timedelta(seconds=2)))
    assert [a.kind for a in engine.evaluate(now + timedelta(seconds=3))] == [
        "consecutive_failures"]


def test_nothing_happened_costs_three_small_queries(admin, clock):
    admin.add("t", "t.t", every(60), alerts=AlertConfig())
    engine = AlertEngine(admin.repo)
    now = clock.advance(minutes=1)
    engine.evaluate(now)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(admin.engine, "before_cursor_execute", count)
    try:
        assert engine.evaluate(now + timedelta(seconds=1)) == []
    finally:
        sa.event.remove(admin.engine, "before_cursor_execute", count)
    assert len(statements) == 3, statements


def test_a_raising_handler_is_logged_once_and_never_stops_the_engine(admin, clock, caplog):
    admin.add("t", "t.t", every(60), alerts={"consecutive_failures": 1, "failure_rate": None})
    calls = []

    def broken(alert):
        calls.append(alert)
        raise RuntimeError("handler bug")

    on_alert(broken)
    try:
        engine = AlertEngine(admin.repo)
        now = clock.advance(minutes=1)
        caplog.set_level(logging.DEBUG, logger="celery_beatx.alerts")
        for i in range(3):
            start = now + timedelta(minutes=11 * i)
            add_runs(admin, run("t", f"f{i}", "failed", start))
            assert len(engine.evaluate(start + timedelta(seconds=0.5))) == 1
            add_runs(admin, run("t", f"s{i}", "succeeded", start + timedelta(seconds=1)))
            assert len(engine.evaluate(start + timedelta(seconds=2))) == 1
    finally:
        remove_handler(broken)
    assert len(calls) == 6  # 3 alerts and 3 resolutions all reached it
    tracebacks = [r for r in caplog.records if r.exc_info and "handler" in r.getMessage()]
    assert len(tracebacks) == 1
    assert len(admin.alerts()) == 6


def test_leader_lost_is_stored_and_dispatched(admin, clock, raised):
    engine = AlertEngine(admin.repo, instance_id="host:1")
    alert = engine.leader_lost("its lease could not be renewed in time", clock())
    assert alert is not None and alert.kind == "leader_lost" and alert.level == "warning"
    assert raised == [alert]
    assert admin.alerts()[0].data["instance"] == "host:1"
    # within the cooldown, not again
    assert engine.leader_lost("again", clock.advance(seconds=5)) is None


def test_alerts_query_validates_its_arguments(admin):
    with pytest.raises(InvalidSchedule, match="level"):
        admin.alerts(level="loud")
    with pytest.raises(InvalidSchedule, match="since"):
        admin.alerts(since=datetime(2026, 1, 1))
    with pytest.raises(InvalidSchedule, match="limit"):
        admin.alerts(limit=0)


def test_invalid_schedule_alert_is_resolved_when_the_task_loads_again(admin, clock, app):
    from celery_beatx.scheduler import Scheduler

    admin.add("broken", "t.b", every(60))
    with admin.engine.begin() as conn:
        conn.execute(sa.text("UPDATE beatx_tasks SET schedule = :s WHERE name = 'broken'"),
                     {"s": json.dumps({"type": "nope"})})
    beat = Scheduler(app, clock=clock)
    try:
        beat.feed.load_all()
        assert [a.kind for a in admin.alerts(task="broken")] == ["invalid_schedule"]
        admin.update("broken", schedule=every(30))
        beat.feed.poll()
        alerts = admin.alerts(task="broken")
        assert [a.kind for a in alerts] == ["resolved", "invalid_schedule"]
        assert alerts[1].resolved_at is not None
    finally:
        beat.close()
    with admin.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AlertRow)).scalar() == 2


def test_old_resolved_alerts_are_pruned_and_open_ones_kept(admin, clock, app):
    from datetime import timedelta

    from celery_beatx.scheduler import Scheduler
    from celery_beatx.store.repository import Repository

    repo = Repository(admin.engine)
    old = clock.now - timedelta(days=40)
    with repo.transaction() as session:
        open_id = repo.add_alert(session, level="warning", kind="consecutive_failures",
                                 task_name="a", message="still failing", at=old)
        done_id = repo.add_alert(session, level="warning", kind="consecutive_failures",
                                 task_name="b", message="was failing", at=old)
        gone_id = repo.add_alert(session, level="info", kind="resolved", task_name="b",
                                 message="b recovered", at=old)
        new_id = repo.add_alert(session, level="info", kind="resolved", task_name="c",
                                message="c recovered", at=clock.now - timedelta(days=1))
        event_id = repo.add_alert(session, level="warning", kind="missed_schedule",
                                  task_name="d", message="d was not sent", at=old)
        session.get(AlertRow, done_id).resolved_at = old + timedelta(hours=1)
    app.conf.beatx_alerts_keep_days = 30
    beat = Scheduler(app, clock=clock)
    try:
        beat.tick()  # the leader's first watch prunes
    finally:
        beat.close()
    with admin.engine.connect() as conn:
        left = set(conn.execute(sa.select(AlertRow.id)).scalars())
    assert open_id in left and new_id in left
    assert done_id not in left and gone_id not in left and event_id not in left
    assert BeatxConfig.from_app(_app(beatx_alerts_keep_days="7")).alerts_keep_days == 7.0
    for bad in (-1, 1e6, "soon", True):
        with pytest.raises(InvalidSchedule, match="beatx_alerts_keep_days"):
            BeatxConfig.from_app(_app(beatx_alerts_keep_days=bad))
