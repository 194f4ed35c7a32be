"""The alert rules, run by the leader every ``beatx_sync_interval``
(:meth:`AlertEngine.evaluate`).

Each evaluation reads only what happened since the previous one: runs whose outcome was
recorded after a watermark on ``finished_at``, runs recorded after a watermark on
``created_at`` (catch-up and skipped occurrences), and the few runs in the ``stuck`` and
``send_failed`` states (both indexed).  When nothing happened that is three index probes
that return nothing.  The tasks concerned are then judged by :func:`judge` on their newest
outcomes and their open (unresolved) alerts, so judging the same outcome twice changes
nothing: an alert is raised once, and a condition alert stays open until a ``resolved``
alert closes it.  Beyond that, the same (task, kind) is not raised again within the
cooldown (``beatx_alert_cooldown``, 10 minutes by default), which also survives restarts
and leader changes (it is read back from ``beatx_alerts``).

Outcomes are timed by the worker that reports them.  Outcomes are looked at again for
:data:`MARGIN` seconds after the watermark passed them, so a worker whose clock is a little
behind, or an outcome written a little late, is still seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ..alerts import (
    CONDITION_KINDS,
    CONSECUTIVE_FAILURES,
    DEFAULT_COOLDOWN,
    FAILURE_RATE,
    KIND_LEVELS,
    LEADER_LOST,
    MISSED_SCHEDULE,
    RESOLVED,
    SEND_FAILED,
    SLOW_EXECUTION,
    STUCK_TASK,
    Alert,
    AlertConfig,
    AlertCooldown,
    config_of,
    dispatch,
)
from ..states import FAILED, STUCK, SUCCEEDED
from ..states import SEND_FAILED as SEND_FAILED_STATUS
from ..store.repository import Repository
from .outage import Outage

#: Outcomes are looked at again for this long after the watermark passed them (seconds).
MARGIN = 30.0
#: After a (re)start, what happened this long before the first evaluation is looked at.
LOOKBACK = DEFAULT_COOLDOWN
#: Outcomes the rules count: a success, or a failure reported by the worker.
OUTCOMES = (SUCCEEDED, FAILED)
#: Run kinds that mean an occurrence missed its time.
MISSED_KINDS = ("catchup", "skipped")
#: How long ``stuck`` and ``send_failed`` runs are looked at after they were recorded.
FLAG_HORIZON = timedelta(days=1)
ERROR_CHARS = 500


@dataclass
class TaskNews:
    """What happened to one task since the last evaluation."""

    finished: list[Any] = field(default_factory=list)
    missed: list[Any] = field(default_factory=list)
    flagged: list[Any] = field(default_factory=list)


@dataclass
class Verdict:
    """What :func:`judge` decided for one task: alerts to raise and open alert kinds that
    are resolved (with why)."""

    raise_: list[Alert] = field(default_factory=list)
    resolve: dict[str, str] = field(default_factory=dict)


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "..."


def _alert(kind: str, task: str | None, message: str, at: datetime, **data: Any) -> Alert:
    return Alert(KIND_LEVELS[kind], kind, task, message, at,
                 {k: v for k, v in data.items() if v is not None})


def judge(name: str, config: AlertConfig | None, news: TaskNews, outcomes: Sequence[Any],
          open_kinds: Iterable[str], now: datetime) -> Verdict:
    """Decide one task's alerts.  Pure: no database.

    :param config: the task's rules (its own ``alerts``, else ``beatx_default_alerts``).
    :param news: its runs finished, missed and flagged (stuck, send_failed) since the last
        evaluation.
    :param outcomes: its newest outcomes (``status``, ``finished_at``, ``runtime``,
        ``error``), newest first, at least ``max(window, consecutive_failures)`` of them
        when it has that many.
    :param open_kinds: kinds of its alerts not resolved yet.
    """
    verdict = Verdict()
    opened = set(open_kinds)
    statuses = [o.status for o in outcomes]
    streak = 0
    for status in statuses:
        if status != FAILED:
            break
        streak += 1
    last_error = _short(outcomes[0].error) if streak else None
    if config is not None and config.consecutive_failures and \
            streak >= config.consecutive_failures and CONSECUTIVE_FAILURES not in opened:
        verdict.raise_.append(_alert(
            CONSECUTIVE_FAILURES, name, f"task {name!r} failed {streak} times in a row"
            + (f": {last_error}" if last_error else ""), now, failures=streak,
            threshold=config.consecutive_failures, error=last_error))
    if statuses and statuses[0] == SUCCEEDED:
        for kind in (CONSECUTIVE_FAILURES, STUCK_TASK, SEND_FAILED):
            if kind in opened:
                verdict.resolve[kind] = "a run succeeded"
    if config is not None and config.failure_rate is not None:
        recent = statuses[:config.window]
        if len(recent) >= config.window:
            failures = recent.count(FAILED)
            rate = failures / len(recent)
            if rate >= config.failure_rate and FAILURE_RATE not in opened:
                verdict.raise_.append(_alert(
                    FAILURE_RATE, name, f"task {name!r}: {failures} of its last {len(recent)} "
                    f"runs failed ({rate:.0%}, threshold {config.failure_rate:.0%})", now,
                    failures=failures, window=len(recent), rate=round(rate, 4),
                    threshold=config.failure_rate))
            elif rate < config.failure_rate and FAILURE_RATE in opened:
                verdict.resolve[FAILURE_RATE] = (f"failure rate back to {rate:.0%} over the "
                                                 f"last {len(recent)} runs")
    if config is not None and config.slow_seconds is not None:
        timed = [r for r in news.finished if r.status in OUTCOMES and r.runtime is not None]
        slow = [r for r in timed if r.runtime > config.slow_seconds]
        if slow and SLOW_EXECUTION not in opened:
            worst = max(slow, key=lambda r: r.runtime)
            verdict.raise_.append(_alert(
                SLOW_EXECUTION, name, f"task {name!r} ran for {worst.runtime:.1f} s "
                f"(slow_seconds {config.slow_seconds:g})", now, runtime=worst.runtime,
                task_id=worst.task_id, threshold=config.slow_seconds, slow_runs=len(slow)))
        elif timed and not slow and SLOW_EXECUTION in opened:
            verdict.resolve[SLOW_EXECUTION] = (f"a run finished within "
                                               f"{config.slow_seconds:g} s")
    if news.missed and config is not None and config.missed_schedule:
        late = [r for r in news.missed if r.kind == "catchup"]
        skipped = [r for r in news.missed if r.kind == "skipped"]
        parts = []
        if late:
            parts.append(f"{len(late)} sent late by catch-up")
        if skipped:
            parts.append(f"{len(skipped)} skipped ({skipped[0].reason or 'missed'})")
        first = min(r.scheduled_at for r in news.missed)
        verdict.raise_.append(_alert(
            MISSED_SCHEDULE, name, f"task {name!r} missed its schedule: " + ", ".join(parts),
            now, late=len(late) or None, skipped=len(skipped) or None,
            first_missed=first.isoformat()))
    stuck = [r for r in news.flagged if r.status == STUCK]
    if stuck and STUCK_TASK not in opened and STUCK_TASK not in verdict.resolve:
        run = stuck[0]
        verdict.raise_.append(_alert(
            STUCK_TASK, name, f"task {name!r}: run {run.task_id} is stuck"
            + (f" ({run.reason})" if run.reason else ""), now, task_id=run.task_id,
            runs=len(stuck), reason=run.reason))
    failed_sends = [r for r in news.flagged if r.status == SEND_FAILED_STATUS]
    if failed_sends and SEND_FAILED not in opened and SEND_FAILED not in verdict.resolve:
        run = failed_sends[0]
        error = _short(run.error)
        verdict.raise_.append(_alert(
            SEND_FAILED, name, f"task {name!r}: sending run {run.task_id} failed"
            + (f": {error}" if error else ""), now, task_id=run.task_id,
            runs=len(failed_sends), error=error))
    return verdict


class _Watermark:
    """Rows after a moment, each looked at once: the moment moves up to the newest row
    seen (never past ``now``), and rows within ``margin`` before it are read again but
    recognised by their key."""

    def __init__(self, start: datetime, margin: float) -> None:
        self.at = start
        self.margin = timedelta(seconds=margin)
        self.seen: dict[str, datetime] = {}

    def since(self) -> datetime:
        return self.at - self.margin

    def fresh(self, rows: Iterable[Any], key: Callable[[Any], str]) -> list[Any]:
        return [r for r in rows if key(r) not in self.seen]

    def advance(self, rows: Iterable[Any], key: Callable[[Any], str],
                when: Callable[[Any], datetime], now: datetime) -> None:
        newest = self.at
        for row in rows:
            moment = when(row)
            self.seen[key(row)] = moment
            if moment > newest:
                newest = moment
        self.at = min(newest, max(now, self.at))
        horizon = self.since()
        for k in [k for k, at in self.seen.items() if at < horizon]:
            del self.seen[k]


class AlertEngine:
    """Raises alerts from run outcomes; see the module docstring.

    :param repo: the schedule database.
    :param default_alerts: ``beatx_default_alerts`` (rules of tasks without their own).
    :param cooldown: seconds before the same (task, kind) may be raised again.
    :param db: beat's database :class:`~celery_beatx.beat.outage.Outage` (one log line per
        outage); without it, failures are logged here once per outage.
    :param fence: called with the session before writing; raises when this beat is no
        longer the leader (:meth:`~celery_beatx.beat.lease.Leadership.check_fence`).
    :param instance_id: this beat's name, for ``leader_lost``.
    """

    def __init__(self, repo: Repository, *, default_alerts: AlertConfig | None = None,
                 cooldown: float = DEFAULT_COOLDOWN.total_seconds(),
                 logger: logging.Logger | None = None, db: Outage | None = None,
                 fence: Callable[[Session], None] | None = None,
                 instance_id: str | None = None) -> None:
        self.repo = repo
        self.default_alerts = default_alerts
        self.cooldown = AlertCooldown(timedelta(seconds=cooldown))
        self.logger = logger or logging.getLogger("celery_beatx.alerts")
        self.db = db or Outage("database", self.logger)
        self.fence = fence
        self.instance_id = instance_id
        self._finished: _Watermark | None = None
        self._created: _Watermark | None = None
        self._flagged: dict[str, datetime] = {}

    def reset(self) -> None:
        """Forget what was seen (call when this beat becomes leader): the next evaluation
        looks back :data:`LOOKBACK` and reads the cooldowns back from the database."""
        self._finished = self._created = None
        self._flagged = {}

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, now: datetime) -> list[Alert]:
        """Judge what happened since the last call; store, hand to handlers (and webhooks)
        and return the alerts raised.  Never raises: a database error is reported through
        ``db`` and the same window is looked at again next time."""
        try:
            raised = self._evaluate(now)
        except Exception as exc:
            from .lease import Fenced

            if isinstance(exc, Fenced):
                return []
            self.db.failed(exc, "evaluating alert rules")
            return []
        self.db.succeeded()
        for alert in raised:
            dispatch(alert)
        return raised

    def _evaluate(self, now: datetime) -> list[Alert]:
        repo = self.repo
        first = self._finished is None
        finished_mark = self._finished or _Watermark(now - LOOKBACK, MARGIN)
        created_mark = self._created or _Watermark(now - LOOKBACK, MARGIN)
        with repo.transaction() as session:
            if first:
                for old in repo.alerts(session, since=now - self.cooldown.cooldown,
                                       limit=10000):
                    self.cooldown.seen(old.kind, old.task_name, old.at)
            finished_rows = repo.runs_finished_since(session, finished_mark.since())
            created_rows = repo.runs_created_since(session, created_mark.since(),
                                                   MISSED_KINDS)
            flagged_rows = repo.runs_in_status(session, (STUCK, SEND_FAILED_STATUS),
                                               since=now - FLAG_HORIZON)
            news: dict[str, TaskNews] = {}
            for row in finished_mark.fresh(finished_rows, _task_id):
                news.setdefault(row.task_name, TaskNews()).finished.append(row)
            for row in created_mark.fresh(created_rows, _task_id):
                news.setdefault(row.task_name, TaskNews()).missed.append(row)
            flagged_now = {r.task_id: r.created_at for r in flagged_rows}
            for row in flagged_rows:
                if first and row.created_at < now - LOOKBACK:
                    continue  # from before this beat led: judged then (or too old to tell)
                if row.task_id not in self._flagged:
                    news.setdefault(row.task_name, TaskNews()).flagged.append(row)
            raised: list[Alert] = []
            if news:
                raised = self._judge_all(session, news, now)
        finished_mark.advance(finished_rows, _task_id, _finished_at, now)
        created_mark.advance(created_rows, _task_id, _created_at, now)
        self._finished, self._created = finished_mark, created_mark
        self._flagged = flagged_now
        self.cooldown.forget_before(now - self.cooldown.cooldown)
        return raised

    def _judge_all(self, session: Session, news: Mapping[str, TaskNews], now: datetime
                   ) -> list[Alert]:
        repo = self.repo
        names = sorted(news)
        settings = repo.alert_settings(session, names)
        configs = {n: config_of(settings.get(n), self.default_alerts) for n in names}
        depth = max([max(c.window, c.consecutive_failures or 0)
                     for c in configs.values() if c is not None] + [1])
        outcomes = repo.latest_outcomes(session, [n for n in names if news[n].finished],
                                        OUTCOMES, depth)
        opened: dict[str, dict[str, list[int]]] = {}
        for alert in repo.open_alerts(session, CONDITION_KINDS, names=names):
            opened.setdefault(alert.task_name or "", {}).setdefault(alert.kind, []).append(
                alert.id)
        raised: list[Alert] = []
        for name in names:
            mine = opened.get(name, {})
            verdict = judge(name, configs[name], news[name], outcomes.get(name, []),
                            mine, now)
            if self.fence is not None and (verdict.raise_ or verdict.resolve):
                self.fence(session)
            if verdict.resolve:
                raised.append(resolve(repo, session, name, {
                    kind: (mine[kind], why) for kind, why in verdict.resolve.items()}, now))
            for alert in verdict.raise_:
                if self.cooldown.admit(alert):
                    raised.append(store(repo, session, alert))
        return raised

    # -- leadership ------------------------------------------------------------------------

    def leader_lost(self, reason: str | None, now: datetime) -> Alert | None:
        """Raise ``leader_lost`` (this beat stopped being leader because ``reason``).

        Call it from the lease's ``on_loss``.  The alert goes to handlers and webhooks in
        any case; it is stored if the database answers (it often does not: a lost lease is
        usually a database problem)."""
        alert = _alert(LEADER_LOST, None, f"beat {self.instance_id or ''} lost the leader "
                       f"lease ({reason or 'unknown reason'}); it stops sending and another "
                       "beat takes over", now, instance=self.instance_id, reason=reason)
        if not self.cooldown.admit(alert):
            return None
        try:
            with self.repo.transaction() as session:
                alert = store(self.repo, session, alert)
        except Exception as exc:
            self.logger.warning("beat: could not store the leader_lost alert: %s: %s",
                                type(exc).__name__, str(exc).splitlines()[0][:200])
        dispatch(alert)
        self.reset()
        return alert


def store(repo: Repository, session: Session, alert: Alert) -> Alert:
    """Insert ``alert``; returns it with its id."""
    new_id = repo.add_alert(session, level=alert.level, kind=alert.kind,
                            task_name=alert.task_name, message=alert.message, at=alert.at,
                            data=alert.data or None)
    return Alert(alert.level, alert.kind, alert.task_name, alert.message, alert.at,
                 alert.data, new_id)


def resolve(repo: Repository, session: Session, name: str,
            kinds: Mapping[str, tuple[Sequence[int], str]], now: datetime) -> Alert:
    """Close the open alerts ``kinds`` of task ``name`` ({kind: (alert ids, why)}) and
    store the ``resolved`` alert that says so."""
    ids = sorted(i for ids_, _ in kinds.values() for i in ids_)
    repo.resolve_alerts(session, ids, now)
    whys = "; ".join(f"{kind}: {why}" for kind, (_, why) in sorted(kinds.items()))
    return store(repo, session, _alert(
        RESOLVED, name, f"task {name!r} recovered ({whys})", now,
        resolves=sorted(kinds), alert_ids=ids))


def _task_id(row: Any) -> str:
    return str(row.task_id)


def _finished_at(row: Any) -> datetime:
    return row.finished_at  # type: ignore[no-any-return]


def _created_at(row: Any) -> datetime:
    return row.created_at  # type: ignore[no-any-return]
