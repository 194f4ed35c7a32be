"""``BeatAdmin.health()``: is beat alive and doing its job?

Times are the database's (beats write their heartbeats in database time), so the machine
asking may have any clock.  The rule for ``healthy`` (see README, "Health"):

- the schema is at this release's head revision;
- a beat that sends is alive: an instance with role ``leader`` or ``single`` whose
  heartbeat is at most ``2 × its heartbeat interval + 1 s`` old (beat writes it every
  ``beatx_sync_interval``, so a frozen or wedged loop shows within two intervals), and not
  two of them with ``beatx_ha`` off;
- no task is overdue: enabled, not paused, schedulable, and its next run (plus its jitter)
  more than ``overdue_grace`` seconds in the past, while no dependency holds it back;
- no run is stuck (marked ``stuck`` within ``stuck_within``).

Invalid tasks, open alerts and run outcomes that are not being recorded are reported as
warnings: they are problems of some tasks, not of beat.  With ``instance=``, only that
beat's heartbeat decides (a per-process liveness probe).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..alerts import CONDITION_KINDS, Alert, config_of
from ..errors import InvalidSchedule
from ..migrate import current_revision, head_revision
from ..schedules.base import require_aware
from ..states import BLOCKED, STUCK
from ._base import AdminBase
from .alerts import alert_of

#: An instance is alive while its heartbeat is at most ``2 × interval + HEARTBEAT_SLACK``
#: seconds old.
HEARTBEAT_SLACK = 1.0
#: Default of ``overdue_grace`` (seconds).
OVERDUE_GRACE = 60.0
#: A run still ``sent`` (no start recorded) this long after its send means outcomes are not
#: being recorded (seconds).
OUTCOME_WAIT = 300.0
#: Instances whose last heartbeat is older than this are not listed.
FORGET_INSTANCES = timedelta(days=1)
#: Most rows of each list in a report (counts are exact).
SHOWN = 100
SENDING_ROLES = ("leader", "single")


@dataclass(frozen=True)
class InstanceState:
    """One beat process as its heartbeat shows it."""

    instance_id: str
    role: str
    host: str | None
    pid: int | None
    started_at: datetime
    heartbeat_at: datetime
    #: Seconds since the heartbeat (database time).
    heartbeat_age: float
    #: Its heartbeat interval (``beatx_sync_interval``) in seconds.
    heartbeat_every: float
    alive: bool
    stopped_at: datetime | None


@dataclass(frozen=True)
class OverdueTask:
    name: str
    next_run_at: datetime
    #: Seconds behind its (jittered) fire time.
    late_seconds: float


@dataclass(frozen=True)
class StuckRun:
    task_name: str
    task_id: str
    scheduled_at: datetime
    reason: str | None


@dataclass(frozen=True)
class InvalidTask:
    name: str
    reason: str


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str | None

    @property
    def ok(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class OutcomeState:
    """Whether run outcomes (``celery_beatx.track``) are being recorded, for the tasks whose
    policies read them (``overlap``, ``depends_on``, alert rules)."""

    #: How many enabled tasks have a policy that reads outcomes.
    needed_by: int
    #: Some of them, by name.
    examples: list[str]
    #: The newest outcome's time (``None``: none recorded).
    last_outcome_at: datetime | None
    #: When a run that still has no recorded start was sent, if more than
    #: :data:`OUTCOME_WAIT` seconds ago (``None``: no such run).
    unstarted_since: datetime | None

    @property
    def recorded(self) -> bool:
        return self.needed_by == 0 or self.unstarted_since is None


@dataclass(frozen=True)
class HealthReport:
    """What :meth:`~celery_beatx.BeatAdmin.health` found; ``healthy`` follows the rule in
    the module docstring, ``problems`` says why not, ``warnings`` what else to look at."""

    healthy: bool
    checked_at: datetime
    schema: SchemaState
    leader: str | None
    instances: list[InstanceState]
    overdue: list[OverdueTask]
    overdue_count: int
    stuck: list[StuckRun]
    stuck_count: int
    invalid: list[InvalidTask]
    invalid_count: int
    open_alerts: list[Alert]
    open_alert_count: int
    outcomes: OutcomeState | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``celery beatx health --json``)."""
        out = asdict(self)
        out["schema"]["ok"] = self.schema.ok
        if self.outcomes is not None:
            out["outcomes"]["recorded"] = self.outcomes.recorded
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _matches(instance_id: str, wanted: str) -> bool:
    return instance_id == wanted or instance_id.startswith(wanted + ":")


class HealthMixin(AdminBase):
    """``health()`` of :class:`~celery_beatx.BeatAdmin`."""

    def health(self, now: datetime | None = None, *, overdue_grace: float = OVERDUE_GRACE,
               stuck_within: timedelta = timedelta(days=1),
               instance: str | None = None) -> HealthReport:
        """Check beat's health (never migrates, never writes).

        :param now: the time to judge at (default: the database's clock).
        :param overdue_grace: seconds a task may be behind its fire time before it counts
            as overdue.
        :param stuck_within: stuck runs recorded longer ago than this are not counted.
        :param instance: judge only this beat's heartbeat (its ``beatx_instance_id``, or
            the ``hostname`` part of the default ``hostname:pid``).
        """
        if isinstance(overdue_grace, bool) or not isinstance(overdue_grace, (int, float)) \
                or overdue_grace < 0:
            raise InvalidSchedule(f"overdue_grace {overdue_grace!r} must be a number of "
                                  "seconds >= 0", "overdue_grace")
        if instance is not None and (not isinstance(instance, str) or not instance):
            raise InvalidSchedule(f"instance {instance!r} must be a beat instance id",
                                  "instance")
        if now is not None:
            now = require_aware(now, "now")
        schema = SchemaState(current_revision(self.engine), head_revision())
        problems: list[str] = []
        warnings: list[str] = []
        if not schema.ok:
            problems.append(f"the schema is at {schema.current or 'nothing (empty database)'}"
                            f", this release needs {schema.head}: run `celery -A <app> beatx "
                            "migrate`")
            if schema.current is None:
                return HealthReport(False, now or self._now(), schema, None, [], [], 0, [], 0,
                                    [], 0, [], 0, None, problems, warnings)
        with self.repo.transaction(readonly=True) as session:
            repo = self.repo
            db_now = repo.db_now(session)
            now = now or db_now
            instances = self._instances(repo.instances(session), db_now)
            overdue_rows = repo.overdue_tasks(session, now - timedelta(seconds=overdue_grace))
            overdue = [OverdueTask(r.name, r.next_run_at, round(
                (now - r.next_run_at).total_seconds() - float(r.jitter or 0), 3))
                for r in overdue_rows]
            overdue = [o for o in overdue if o.late_seconds > overdue_grace]
            if overdue:
                held = repo.names_with_status(session, [o.name for o in overdue], BLOCKED)
                overdue = [o for o in overdue if o.name not in held]
            stuck_rows = repo.runs_in_status(session, (STUCK,), since=now - stuck_within,
                                             limit=SHOWN + 1)
            stuck = [StuckRun(r.task_name, r.task_id, r.scheduled_at, r.reason)
                     for r in stuck_rows]
            stuck_count = len(stuck) if len(stuck) <= SHOWN else \
                repo.count_in_status(session, (STUCK,), since=now - stuck_within)
            invalid = [InvalidTask(r.name, r.invalid_reason)
                       for r in repo.invalid_tasks(session, limit=SHOWN)]
            invalid_count = repo.task_counts(session)["invalid"] if len(invalid) >= SHOWN \
                else len(invalid)
            open_alerts = [alert_of(a) for a in repo.open_alerts(session, CONDITION_KINDS,
                                                                 limit=SHOWN)]
            open_count = repo.count_open_alerts(session, CONDITION_KINDS) \
                if len(open_alerts) >= SHOWN else len(open_alerts)
            outcomes = self._outcomes(session, now)
        senders = [i for i in instances if i.alive and i.role in SENDING_ROLES]
        leader = next((i.instance_id for i in senders if i.role == "leader"),
                      senders[0].instance_id if senders else None)
        cluster: list[str] = []
        if not senders:
            cluster.append(self._no_sender(instances))
        elif len(senders) > 1 and any(i.role == "single" for i in senders):
            cluster.append("several beats send every task (beatx_ha is off): "
                           + ", ".join(i.instance_id for i in senders))
        if overdue:
            cluster.append(f"{len(overdue)} task(s) overdue by more than {overdue_grace:g} s, "
                           f"e.g. {overdue[0].name!r} ({overdue[0].late_seconds:.0f} s late)")
        if stuck:
            cluster.append(f"{stuck_count} run(s) stuck, e.g. {stuck[0].task_name!r} "
                           f"({stuck[0].reason or 'no outcome'})")
        if instance is None:
            problems.extend(cluster)
        else:
            mine = [i for i in instances if _matches(i.instance_id, instance)]
            if not any(i.alive for i in mine):
                problems.append(f"beat instance {instance!r} has no recent heartbeat" + (
                    f" (last {min(i.heartbeat_age for i in mine):.1f} s ago)" if mine else
                    " (not seen in the last day)"))
            warnings.extend(cluster)
        if invalid:
            warnings.append(f"{invalid_count} task(s) cannot be scheduled, e.g. "
                            f"{invalid[0].name!r}: {invalid[0].reason}")
        if open_alerts:
            warnings.append(f"{open_count} open alert(s), newest: {open_alerts[0].message}")
        if outcomes is not None and not outcomes.recorded:
            warnings.append(
                f"{outcomes.needed_by} task(s) have policies that read run outcomes "
                f"(overlap, depends_on, alert rules), but a run sent at "
                f"{outcomes.unstarted_since:%Y-%m-%d %H:%M:%S} still has no recorded start: "
                "is celery_beatx.track(app) in the workers' app, and are workers consuming?")
        return HealthReport(not problems, now, schema, leader, instances, overdue[:SHOWN],
                            len(overdue), stuck[:SHOWN], stuck_count, invalid, invalid_count,
                            open_alerts, open_count, outcomes, problems, warnings)

    # -- parts -------------------------------------------------------------------------------

    def _instances(self, rows: list[Any], db_now: datetime) -> list[InstanceState]:
        out = []
        for row in rows:
            if db_now - row.heartbeat_at > FORGET_INSTANCES:
                continue
            every = float(row.heartbeat_every or self.sync_interval)
            age = max((db_now - row.heartbeat_at).total_seconds(), 0.0)
            alive = row.stopped_at is None and age <= 2 * every + HEARTBEAT_SLACK
            out.append(InstanceState(row.instance_id, row.role, row.host, row.pid,
                                     row.started_at, row.heartbeat_at, round(age, 3), every,
                                     alive, row.stopped_at))
        return out

    @staticmethod
    def _no_sender(instances: list[InstanceState]) -> str:
        if not instances:
            return "no beat has written a heartbeat to this database"
        live = [i for i in instances if i.alive]
        if live:
            return ("no beat is sending: the live beat(s) are standby ("
                    + ", ".join(i.instance_id for i in live) + ")")
        newest = min(instances, key=lambda i: i.heartbeat_age)
        state = "stopped" if newest.stopped_at else \
            f"last heartbeat {newest.heartbeat_age:.1f} s ago"
        return f"no beat is alive: newest is {newest.instance_id!r} ({state})"

    def _outcomes(self, session: Any, now: datetime) -> OutcomeState | None:
        repo = self.repo
        gated, alerting = repo.outcome_needs(session)
        needing = set(gated)
        default = self.default_alerts
        if default is not None and _reads_outcomes(default):
            enabled = repo.count_enabled(session)
            needed_by = max(enabled, len(needing))
            examples = sorted(needing)[:5]
        else:
            for name, stored in alerting:
                config = config_of(stored, default)
                if config is not None and _reads_outcomes(config):
                    needing.add(name)
            needed_by = len(needing)
            examples = sorted(needing)[:5]
        last = repo.last_outcome_at(session)
        unstarted = repo.oldest_unstarted_since(
            session, now - timedelta(seconds=OUTCOME_WAIT)) if needed_by else None
        return OutcomeState(needed_by, examples, last, unstarted)


def _reads_outcomes(config: Any) -> bool:
    return bool(config.consecutive_failures or config.failure_rate is not None
                or config.slow_seconds is not None or config.stuck_seconds is not None)
