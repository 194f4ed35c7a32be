"""Prometheus metrics of a beat process (extra ``metrics``: ``prometheus_client``).

With ``beatx_metrics_port`` set, beat serves these on ``http://<beatx_metrics_addr>:<port>/``
with ``prometheus_client``'s own HTTP server (a daemon thread):

==================================  =========  ==================================================
series                              type       meaning
==================================  =========  ==================================================
``beatx_tasks{state}``              gauge      tasks ``active``, ``paused``, ``invalid``,
                                               ``disabled`` (read from the database at scrape
                                               time, at most every 5 s)
``beatx_sends_total``               counter    runs published
``beatx_send_failures_total``       counter    publishes that failed, by ``reason``:
  ``{reason}``                                 ``error`` or ``broker_unreachable``
``beatx_tick_duration_seconds``     histogram  time spent in one iteration of beat's loop
``beatx_send_lateness_seconds``     histogram  how long after its scheduled time a run was
                                               published (jitter included)
``beatx_change_feed_lag_seconds``   gauge      seconds since beat last read the change feed
``beatx_leader``                    gauge      1 while this beat sends (leader or single)
``beatx_alerts_total{kind,level}``  counter    alerts raised in this process
==================================  =========  ==================================================
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from .alerts import Alert, add_sink, remove_sink
from .errors import BeatxError

logger = logging.getLogger("celery_beatx.metrics")

LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    900.0, 3600.0)
TICK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The task counts are read from the database at most this often (seconds).
TASKS_EVERY = 5.0
TASK_STATES = ("active", "paused", "invalid", "disabled")
SENDING_ROLES = ("leader", "single")


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise BeatxError("beatx_metrics_port is set but prometheus_client is not installed: "
                         "pip install 'celery-beatx-sql[metrics]'") from None
    return prometheus_client


class BeatMetrics:
    """The metrics of one beat; beat calls the ``observe_*`` methods, Prometheus scrapes.

    :param repo: the schedule database (for ``beatx_tasks``); ``None`` leaves it out.
    :param registry: a ``prometheus_client`` registry (default: a new one, so several
        beats in one process, e.g. tests, do not collide).
    """

    def __init__(self, repo: Any = None, registry: Any = None,
                 mono: Callable[[], float] = time.monotonic) -> None:
        client = _client()
        self.client = client
        self.repo = repo
        self.mono = mono
        self.registry = registry if registry is not None else client.CollectorRegistry()
        reg = self.registry
        self.sends = client.Counter("beatx_sends", "Runs published.", registry=reg)
        self.send_failures = client.Counter(
            "beatx_send_failures", "Publishes that failed.", ["reason"], registry=reg)
        self.tick_duration = client.Histogram(
            "beatx_tick_duration_seconds", "Time spent in one iteration of beat's loop.",
            buckets=TICK_BUCKETS, registry=reg)
        self.lateness = client.Histogram(
            "beatx_send_lateness_seconds",
            "How long after its scheduled time a run was published.",
            buckets=LATENESS_BUCKETS, registry=reg)
        self.feed_lag = client.Gauge(
            "beatx_change_feed_lag_seconds", "Seconds since beat last read the change feed.",
            registry=reg)
        self.feed_lag.set_function(self._feed_lag)
        self.leader = client.Gauge("beatx_leader", "1 while this beat sends.", registry=reg)
        self.alerts = client.Counter("beatx_alerts", "Alerts raised in this process.",
                                     ["kind", "level"], registry=reg)
        self.tasks = client.Gauge("beatx_tasks", "Tasks by state.", ["state"], registry=reg)
        for state in TASK_STATES:
            self.tasks.labels(state=state).set_function(
                lambda state=state: float(self._task_counts().get(state, 0)))
        self._last_poll: float | None = None
        self._counts: dict[str, int] = {}
        self._counts_at = float("-inf")
        self._counts_lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- serving -----------------------------------------------------------------------------

    def start(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve the metrics on ``addr:port`` (port 0: any free one); returns the port.  The
        alerts raised in this process are counted from now on."""
        server, thread = self.client.start_http_server(port, addr=addr, registry=self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_port)
        add_sink(self.observe_alert)
        logger.info("beat: Prometheus metrics on http://%s:%d/", addr, self.port)
        return self.port

    def close(self) -> None:
        """Stop serving."""
        remove_sink(self.observe_alert)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what beat reports -----------------------------------------------------------------

    def observe_send(self, outcome: str, scheduled_at: datetime | None,
                     now: datetime) -> None:
        """One publish: ``outcome`` is the dispatcher's (``sent``, ``broker``, ``failed``,
        ``dropped``); a run that left also records its lateness."""
        if outcome == "sent":
            self.sends.inc()
            if scheduled_at is not None:
                self.lateness.observe(max((now - scheduled_at).total_seconds(), 0.0))
        elif outcome == "broker":
            self.send_failures.labels(reason="broker_unreachable").inc()
        else:
            self.send_failures.labels(reason="error").inc()

    def observe_tick(self, seconds: float) -> None:
        self.tick_duration.observe(seconds)

    @contextlib.contextmanager
    def timed_tick(self) -> Iterator[None]:
        """``with metrics.timed_tick(): ...`` around one iteration of the loop."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_tick(time.perf_counter() - started)

    def observe_poll(self) -> None:
        """The change feed was read just now."""
        self._last_poll = self.mono()

    def set_role(self, role: str) -> None:
        """This beat's role (``leader``, ``standby``, ``single``)."""
        self.leader.set(1 if role in SENDING_ROLES else 0)

    def observe_alert(self, alert: Alert) -> None:
        self.alerts.labels(kind=alert.kind, level=alert.level).inc()

    # -- read at scrape time ---------------------------------------------------------------

    def _feed_lag(self) -> float:
        if self._last_poll is None:
            return float("nan")
        return max(self.mono() - self._last_poll, 0.0)

    def _task_counts(self) -> dict[str, int]:
        if self.repo is None:
            return {}
        with self._counts_lock:
            if self.mono() - self._counts_at >= TASKS_EVERY:
                self._counts_at = self.mono()
                try:
                    with self.repo.transaction(readonly=True) as session:
                        self._counts = self.repo.task_counts(session)
                except Exception as exc:  # keep the last counts; the scrape still answers
                    logger.debug("metrics: could not count tasks: %s", exc)
            return self._counts
