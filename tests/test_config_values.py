"""Values Celery accepts in ``beat_schedule`` are accepted, stored and sent as given:
in-process Scheduler, real databases, real Redis broker, injected clock."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import sqlalchemy as sa
from kombu import Exchange, Queue

from beat_helpers import drain, make
from celery_beatx import BeatAdmin, every
from celery_beatx.store.models import Task
from celery_beatx.store.rows import checked_definition

UTC = timezone.utc


def test_beat_schedule_with_celery_values_is_stored_and_sent_as_given(app, db_url, clock,
                                                                     queue_name):
    when = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    ident = uuid.UUID("0f6c7d1e-8a58-4a43-9c43-1b2f1e5d9a10")
    # Celery computes a message's expiry against the real clock: keep it ahead of both
    expires = max(datetime.now(UTC), clock.now).replace(microsecond=0) + timedelta(days=2)
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    app.conf.beat_schedule = {"typed": {
        "task": "proj.typed", "schedule": 10.0, "args": (when,),
        "kwargs": {"amount": Decimal("12.30"), "id": ident, "day": when.date()},
        "options": {"expires": expires, "queue": queue, "countdown": 0},
    }}
    beat = make(app, clock)
    admin = BeatAdmin(url=db_url, clock=clock)
    info = admin.get("typed")
    assert info.invalid_reason is None and info.source == "config"
    assert info.args == [when]
    assert info.kwargs == {"amount": Decimal("12.30"), "id": ident, "day": when.date()}
    assert info.expires == expires
    assert info.queue == queue_name
    assert info.options == {"countdown": 0, "exchange": queue_name,
                            "exchange_type": "direct", "routing_key": queue_name}

    # what beat sends from: the stored row, decoded to the original types
    engine = sa.create_engine(db_url)
    with engine.connect() as conn, sa.orm.Session(conn) as session:
        row = session.scalars(sa.select(Task).where(Task.name == "typed")).one()
        fields, problem = checked_definition(row)
    engine.dispose()
    assert problem is None
    assert fields["args"] == [when] and isinstance(fields["args"][0], datetime)
    assert type(fields["kwargs"]["amount"]) is Decimal
    assert isinstance(fields["kwargs"]["id"], uuid.UUID)
    assert fields["expires"] == expires

    # the send carries them: the worker gets the same values Celery would have sent
    clock.advance(seconds=10)
    beat.tick()
    msgs = drain(queue_name)
    assert len(msgs) == 1
    msg = msgs[0]
    assert msg["args"] == [when]
    assert msg["kwargs"] == {"amount": Decimal("12.30"), "id": ident, "day": when.date()}
    assert datetime.fromisoformat(msg["headers"]["expires"]) == expires
    beat.close()

    # an unchanged beat_schedule makes no new version at the next start
    make(app, clock).close()
    assert admin.get("typed").version == 1

    # export -> import round-trips them
    doc = admin.export_state()
    stored = json.loads(doc)["tasks"][0]
    assert stored["kwargs"]["amount"] == {"__type__": "decimal", "__value__": "12.30"}
    admin.remove("typed")
    admin.import_state(doc)
    again = admin.get("typed")
    assert (again.args, again.kwargs, again.expires, again.queue, again.options) == \
        (info.args, info.kwargs, info.expires, info.queue, info.options)
    admin.engine.dispose()


def test_beat_schedule_entry_with_a_bad_value_is_skipped_others_are_synced(app, db_url,
                                                                           clock, caplog):
    app.conf.beat_schedule = {
        "good": {"task": "proj.good", "schedule": every(seconds=5)},
        "bad": {"task": "proj.bad", "schedule": 5.0, "options": {"headers": "x"}},
    }
    make(app, clock).close()
    admin = BeatAdmin(url=db_url, clock=clock)
    assert [t.name for t in admin.list()] == ["good"]
    assert "'bad' is invalid and skipped" in caplog.text and "headers" in caplog.text
    admin.engine.dispose()


def test_every_accepted_send_option_is_sent_by_celery(app, db_url, clock, queue_name):
    """The options allowed at write time are ones Celery's send path takes: a send with
    all of them at once reaches the queue."""
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("opts", "proj.opts", every(seconds=10), queue=queue_name, headers={"h": 1},
              options={"countdown": 0, "retry": True, "exchange": queue_name,
                       "exchange_type": "direct", "routing_key": queue_name,
                       "retry_policy": {"max_retries": 1, "interval_start": 0,
                                        "interval_step": 0.1, "interval_max": 0.2},
                       "serializer": "json", "compression": "zlib",
                       "delivery_mode": "persistent", "time_limit": 60,
                       "soft_time_limit": 50, "shadow": "nightly", "ignore_result": True,
                       "link": {"task": "proj.next", "args": [1], "kwargs": {},
                                "options": {}, "subtask_type": None, "immutable": False},
                       "link_error": [{"task": "proj.failed", "args": [], "kwargs": {},
                                       "options": {}, "subtask_type": None,
                                       "immutable": False}],
                       "reply_to": "replies", "mandatory": False, "timeout": 5,
                       "confirm_timeout": 5, "MessageGroupId": "g"})
    beat = make(app, clock)
    clock.advance(seconds=10)
    beat.tick()
    msgs = drain(queue_name)
    assert [m["headers"]["task"] for m in msgs] == ["proj.opts"]
    headers = msgs[0]["headers"]
    assert headers["shadow"] == "nightly" and headers["timelimit"] == [60, 50]
    assert headers["ignore_result"] is True and headers["h"] == 1
    assert msgs[0]["properties"]["reply_to"] == "replies"
    beat.close()
    admin.engine.dispose()
