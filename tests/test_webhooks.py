"""Webhooks: a real HTTP receiver on 127.0.0.1, run by the test."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from celery_beatx import AlertConfig, every
from celery_beatx.alerts import PAYLOAD_FORMAT, Alert, dispatch, webhook_from_dict
from celery_beatx.beat.alerting import AlertEngine
from celery_beatx.webhooks import WebhookSender

UTC = timezone.utc
SECRET = "tok-9f1c2e7d-SECRET"


class Receiver:
    """An HTTP server recording every POST; ``statuses`` are answered in turn (then 200),
    ``delay`` seconds before each answer."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None,
                 delay: float = 0.0) -> None:
        self.received: list[dict] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append({"path": self.path, "status": status,
                                          "headers": dict(self.headers),
                                          "json": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self) -> list[dict]:
        return [r for r in self.received if 200 <= r["status"] < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def alert(level: str = "critical", kind: str = "consecutive_failures") -> Alert:
    return Alert(level, kind, "nightly", "task 'nightly' failed 3 times in a row",
                 datetime(2026, 3, 1, 12, 0, tzinfo=UTC), {"failures": 3}, 7)


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:  # noqa: ANN003
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def senders():
    made: list[WebhookSender] = []

    def make(hooks, **kwargs) -> WebhookSender:  # noqa: ANN001, ANN003
        sender = WebhookSender([webhook_from_dict(h, i) for i, h in enumerate(hooks)],
                               instance_id="beat-1", **kwargs).start()
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def test_posts_the_documented_json_with_headers_and_filters_by_level(receivers, senders):
    receiver = receivers()
    senders([{"url": receiver.url("/all"), "headers": {"Authorization": f"Bearer {SECRET}"}},
             {"url": receiver.url("/critical"), "min_level": "critical"}])
    dispatch(alert())
    dispatch(alert("info", "resolved"))
    wait_for(lambda: len(receiver.received) == 3, 10)
    by_path: dict[str, list[dict]] = {}
    for request in receiver.received:
        by_path.setdefault(request["path"], []).append(request)
    assert [r["json"]["kind"] for r in by_path["/critical"]] == ["consecutive_failures"]
    assert sorted(r["json"]["kind"] for r in by_path["/all"]) == ["consecutive_failures",
                                                                  "resolved"]
    first = next(r for r in by_path["/all"] if r["json"]["kind"] == "consecutive_failures")
    assert first["json"] == {
        "format": PAYLOAD_FORMAT, "id": 7, "level": "critical", "kind": "consecutive_failures",
        "task_name": "nightly", "message": "task 'nightly' failed 3 times in a row",
        "at": "2026-03-01T12:00:00+00:00", "data": {"failures": 3}, "instance": "beat-1"}
    assert first["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert first["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in by_path["/critical"][0]["headers"]


def test_retries_with_backoff_until_the_receiver_answers(receivers, senders, caplog):
    caplog.set_level(logging.DEBUG)
    receiver = receivers(statuses=[503, 500])
    sender = senders([{"url": receiver.url(), "headers": {"X-Token": SECRET}}],
                     first_delay=0.1)
    dispatch(alert())
    wait_for(lambda: receiver.delivered(), 10)
    assert [r["status"] for r in receiver.received] == [503, 500, 200]
    assert sender.flush(5)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_a_refusal_is_final_and_logged_without_secrets(receivers, senders, caplog):
    receiver = receivers(statuses=[401])
    sender = senders([{"url": receiver.url() + f"?token={SECRET}",
                       "headers": {"Authorization": SECRET}}], first_delay=0.1)
    dispatch(alert())
    assert sender.flush(10)
    assert [r["status"] for r in receiver.received] == [401]
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused" in m and "HTTP 401" in m for m in messages), messages
    assert all(SECRET not in m for m in messages)


def test_a_dead_or_slow_receiver_never_delays_the_engine_and_gets_the_alert_later(
        admin, clock, senders, caplog):
    """The receiver is down while the alert is raised: evaluate() returns at once, the
    sender retries in the background, and the alert arrives (once) when it is back."""
    caplog.set_level(logging.DEBUG)
    port = free_port()
    sender = senders([{"url": f"http://127.0.0.1:{port}/hook",
                       "headers": {"Authorization": f"Bearer {SECRET}"}, "timeout": 3}],
                     first_delay=0.2, max_delay=0.5)
    admin.add("nightly", "t.n", every(60), alerts=AlertConfig())
    engine = AlertEngine(admin.repo)
    now = clock.advance(minutes=1)
    with admin.repo.transaction() as session:
        admin.repo.add_runs(session, [
            {"task_name": "nightly", "task_id": f"f{i}", "scheduled_at": now, "attempt": 0,
             "status": "failed", "kind": "scheduled", "created_at": now,
             "finished_at": now + timedelta(seconds=i), "runtime": 1.0, "error": "boom"}
            for i in range(3)])
    started = time.perf_counter()
    found = engine.evaluate(now + timedelta(seconds=5))
    elapsed = time.perf_counter() - started
    assert [a.kind for a in found] == ["consecutive_failures"]
    assert elapsed < 1.0, elapsed
    time.sleep(1.0)  # a few failed attempts meanwhile
    receiver = Receiver(port=port)
    try:
        wait_for(lambda: receiver.delivered(), 15)
        assert sender.flush(5)
        assert [r["json"]["kind"] for r in receiver.received] == ["consecutive_failures"]
        assert receiver.received[0]["json"]["id"] == found[0].id
        messages = [r.getMessage() for r in caplog.records]
        # a slow receiver: enqueueing still returns at once
        receiver.delay = 2.0
        started = time.perf_counter()
        for _ in range(5):
            dispatch(alert())
        # sending in the caller would take 2 s per alert: 10 s
        assert time.perf_counter() - started < 2.0
    finally:
        receiver.close()
    assert sum("cannot be reached" in m for m in messages) == 1, messages
    assert sum("reachable again" in m for m in messages) == 1, messages
    assert all(SECRET not in m for m in messages)


def test_a_full_queue_drops_the_oldest_with_one_log_line(senders, caplog):
    caplog.set_level(logging.DEBUG, logger="celery_beatx.webhooks")
    port = free_port()
    sender = senders([{"url": f"http://127.0.0.1:{port}/x", "timeout": 1}], queue_size=3,
                     first_delay=30)
    for index in range(10):
        sender.enqueue(Alert("warning", "send_failed", f"t{index}", "m",
                             datetime(2026, 3, 1, tzinfo=UTC)))
    channel = sender.channels[0]
    wait_for(lambda: channel.dropped >= 6, 5)
    kept = [a.task_name for a, _ in channel.queue]
    assert kept == ["t7", "t8", "t9"]
    drops = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1


def test_beats_webhook_threads_leave_shutdown_signals_to_the_main_thread(app, clock):
    """A process-directed SIGTERM goes to a thread that does not block it; beat's threads
    block SIGTERM and SIGINT, so the main thread gets them and can hold them until a batch is
    complete (signals_deferred)."""
    from celery_beatx.scheduler import Scheduler

    app.conf.beatx_alert_webhooks = [{"url": "http://127.0.0.1:9/alerts"}]
    beat = Scheduler(app, clock=clock)
    try:
        threads = [t for t in threading.enumerate() if t.name.startswith("beatx-webhook")]
        assert threads
        for thread in threads:
            with open(f"/proc/self/task/{thread.native_id}/status") as status:
                blocked = int(next(line for line in status
                                   if line.startswith("SigBlk:")).split()[1], 16)
            assert blocked & (1 << (15 - 1)) and blocked & (1 << (2 - 1)), thread.name
    finally:
        beat.close()
