"""Record -> send -> confirm: the only path by which beat publishes a task.

1. **Record**, in one transaction fenced by the leader lease: read the due tasks' current
   definitions, decide each one (:mod:`celery_beatx.policies`), insert a ``pending`` run per
   occurrence to send (and a ``skipped`` run per occurrence not sent) and advance the tasks'
   state.  Nothing is published before that commit.
2. **Send** through Celery's own chain (the publish callable the scheduler gives), at most
   ``max_in_flight`` messages between two confirms.  Where the transport can (kombu's
   ``Producer.batch``: Redis), a chunk's messages are handed to one transport batch and leave
   together when it is flushed; they count as published only once the flush succeeded.
3. **Confirm**, fenced again while this beat leads: mark the published runs ``sent`` (or
   ``send_failed``) and finish one-offs whose run left.  A beat that lost the lease still
   writes these marks (they record what happened and only move ``pending`` runs forward).

What can go wrong, and what happens:

* the broker is unreachable: the batch stops at the first connection error; the runs not
  published stay ``pending`` and wait in :attr:`Dispatcher.unsent`, re-sent (same ids) when
  the broker answers again;
* a transport batch fails to flush: whether its messages arrived is unknown; they stay
  ``pending`` and are re-sent (same ids) like the rest, so at most one chunk
  (``max_in_flight``) can reach a worker twice with the same id;
* the database fails during the record commit: the outcome is unknown until a read shows
  whether the runs exist (:meth:`Dispatcher.resolve`); only then are they sent or retried;
* the confirm cannot be written: no further chunk is published; the marks wait in memory
  and are retried every tick (also across a loss of the lease that the outage caused),
  never needing a restart;
* beat dies (kill -9): at most ``max_in_flight`` messages were published and not confirmed;
  the next leader re-sends ``pending`` runs with the same task ids (:meth:`Dispatcher.recover`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ..policies import (
    BLOCK,
    BUFFER,
    SCHEDULED,
    SKIP,
    DuePlan,
    Gate,
    Skipped,
    Upstream,
    gate,
    plan_due,
)
from ..schedules import BaseSchedule
from ..states import BLOCKED, BUFFERED, PENDING, SKIPPED
from ..store.repository import Repository
from ..store.rows import send_definition
from .feed import Feed, fire_at
from .heap import Slot, SlotHeap
from .lease import Fenced, Leadership
from .outage import Outage

UTC = timezone.utc
RUN_NAMESPACE = uuid.UUID("6f0d8c1e-2b7a-5c43-9a1d-6265617478a1")

#: Outcomes of one publish.
SENT, BROKER_DOWN, FAILED, DROPPED = "sent", "broker", "failed", "dropped"
#: The publish failed in the transport batch, not for the message (kombu refuses a channel
#: that a reconnect replaced while a batch is open): published again on its own.
BATCH_REFUSED = "batch"
#: How often an occurrence blocked by a dependency is checked again (at most).
RECHECK = 1.0


def run_task_id(name: str, scheduled_at: datetime, attempt: int = 0) -> str:
    """Deterministic Celery task id of one occurrence, so duplicates are detectable."""
    key = f"{name}\x00{scheduled_at.astimezone(UTC).isoformat()}\x00{attempt}"
    return str(uuid.uuid5(RUN_NAMESPACE, key))


@dataclass
class Send:
    """One recorded run to publish."""

    task_id: str
    name: str
    scheduled_at: datetime
    attempt: int = 0
    kind: str = SCHEDULED
    #: The task has no later occurrence: disable (or delete) it once this run has left.
    finishes: bool = False


@dataclass
class _Decision:
    slot: Slot
    plan: DuePlan
    broken: str | None = None
    added: int = 0
    gate: Gate | None = None
    #: Task ids of ``plan.sends`` and of ``plan.skipped``, in order (set by the record).
    send_ids: list[str] = field(default_factory=list)
    skip_ids: list[str] = field(default_factory=list)


@dataclass
class _Batch:
    """A record transaction whose outcome is not known yet (its commit raised)."""

    decisions: list[_Decision]
    sends: list[Send]
    inserted: list[str]
    definitions: dict[str, Any]
    now: datetime
    #: The last-run time to record per task when it is not ``now`` (in-memory entries
    #: record the time by their schedule's own clock, as Celery's ``reserve`` does).
    ran_at: dict[str, datetime] = field(default_factory=dict)


@dataclass
class _Marks:
    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    finishing: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.sent or self.failed)

    def extend(self, other: _Marks) -> None:
        self.sent.extend(other.sent)
        self.failed.extend(other.failed)
        self.finishing |= other.finishing


Publish = Callable[[Any, Send], tuple[str, Any]]


class FlushFailed(Exception):
    """A transport batch failed to flush: ``unreachable`` when it was the connection (the
    delivery of its messages is unknown), else the broker refused a command."""

    def __init__(self, error: BaseException, unreachable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.unreachable = unreachable


class PublishBatch(Protocol):
    """A transport batch open for one chunk of publishes (see the scheduler's
    ``_publish_batch``): publishes made meanwhile are buffered until :meth:`flush`."""

    def flush(self) -> None:
        """Send what is buffered.  Raises :class:`FlushFailed` (or any error, taken as the
        connection's) when it did not all arrive."""

    def close(self, error: BaseException | None = None) -> None:
        """End the batch; what was not flushed is discarded."""


class Dispatcher:
    """Carries out sends for the scheduler; see the module docstring.

    :param publish: ``publish(definition, send) -> (outcome, detail)``: sends one message
        through Celery; ``definition`` is the task row (or the in-memory Celery entry).
    :param memory_entry: the in-memory entry of a task driven by its own Celery schedule.
    :param open_batch: ``open_batch(size)``: a transport batch for the next ``size``
        publishes, or ``None`` when they leave one by one.
    """

    def __init__(self, repo: Repository, heap: SlotHeap, feed: Feed, leadership: Leadership,
                 *, publish: Publish, db: Outage, broker: Outage, logger: logging.Logger,
                 clock: Callable[[], datetime], instance_id: str, max_in_flight: int = 100,
                 batch_size: int = 500, grace: float = 5.0,
                 starting_deadline: float | None = None, history_keep: int = 1000,
                 memory_entry: Callable[[str], Any] | None = None,
                 closing: Callable[[], bool] = lambda: False,
                 open_batch: Callable[[int], PublishBatch | None] = lambda _size: None
                 ) -> None:
        self.repo = repo
        self.heap = heap
        self.feed = feed
        self.leadership = leadership
        self.publish = publish
        self.db = db
        self.broker = broker
        self.logger = logger
        self.clock = clock
        self.instance_id = instance_id
        self.max_in_flight = max(1, int(max_in_flight))
        self.batch_size = max(self.max_in_flight, int(batch_size))
        self.grace = grace
        self.starting_deadline = starting_deadline
        self.history_keep = history_keep
        self.memory_entry = memory_entry or (lambda _name: None)
        self.closing = closing
        self.open_batch = open_batch
        #: The broker refused a transport batch for another reason than the connection:
        #: every message is published on its own from then on.
        self.batching_refused = False
        #: Recorded runs not yet published (broker down, or recovered from a dead beat).
        self.unsent: deque[Send] = deque()
        #: Published (or failed) runs whose marks could not be written yet.
        self.unconfirmed = _Marks()
        #: Published in the chunk under way and not confirmed yet (see :meth:`shutdown`).
        self.in_flight = _Marks()
        self.unresolved: _Batch | None = None

    # -- state -----------------------------------------------------------------------------

    def held_ids(self) -> set[str]:
        """Task ids this beat is responsible for right now (never "recovered" from itself)."""
        ids = {s.task_id for s in self.unsent}
        ids.update(self.unconfirmed.sent)
        ids.update(tid for tid, _ in self.unconfirmed.failed)
        ids.update(self.in_flight.sent)
        if self.unresolved is not None:
            ids.update(s.task_id for s in self.unresolved.sends)
        return ids

    def drop(self) -> None:
        """Forget the sends not published yet (leadership lost: the next leader owns them
        now).  Marks of messages already published stay: they are facts, written when the
        database answers whatever this beat's role (:meth:`flush`), so that neither the
        next leader nor this beat, leading again, re-sends those runs."""
        if self.unresolved is not None:
            for decision in self.unresolved.decisions:
                self.heap.push(decision.slot)
        self.unsent.clear()
        self.unconfirmed.extend(self.in_flight)
        self.in_flight = _Marks()
        self.unresolved = None

    # -- recording ---------------------------------------------------------------------------

    def dispatch(self, slots: list[Slot], now: datetime,
                 plans: dict[str, DuePlan] | None = None,
                 ran_at: dict[str, datetime] | None = None) -> int:
        """Record, send and confirm the due ``slots`` (popped from the heap); returns how many
        messages were published.  ``plans``: decisions made by the caller (tasks driven by
        their own Celery schedule object); ``ran_at``: the last-run time to record for such a
        task (default ``now``)."""
        if not slots:
            return 0
        try:
            batch = self._record(slots, now, plans or {}, ran_at or {})
        except Fenced:
            for slot in slots:
                self.heap.push(slot)
            self.leadership.lost_fence()
            return 0
        except _Unknown as unknown:
            self.unresolved = unknown.batch
            self.db.failed(unknown.error, "recording due runs")
            return 0
        except Exception as exc:
            for slot in slots:
                self.heap.push(slot)
            self.db.failed(exc, "recording due runs")
            return 0
        self.db.succeeded()
        return self._after_record(batch)

    def resolve(self) -> bool:
        """Settle a record whose commit raised: send it if it was committed, else retry.

        Returns True when nothing is left unresolved.
        """
        batch = self.unresolved
        if batch is None:
            return True
        try:
            with self.repo.transaction(readonly=True) as session:
                committed = bool(batch.inserted) and bool(
                    self.repo.existing_run_ids(session, batch.inserted[:1]))
        except Exception as exc:
            self.db.failed(exc, "checking whether due runs were recorded")
            return False
        self.db.succeeded()
        self.unresolved = None
        if committed:
            self.logger.info("beat: the last record did commit; sending its %d run(s)",
                             len(batch.sends))
            self._after_record(batch)
        else:
            for decision in batch.decisions:
                self.heap.push(decision.slot)
        return True

    def _record(self, slots: list[Slot], now: datetime, plans: dict[str, DuePlan],
                ran_at: dict[str, datetime]) -> _Batch:
        leadership = self.leadership
        token = leadership.token if leadership.ha else None
        marks: dict[str, str | None] = {}
        decisions: list[_Decision] = []
        sends: list[Send] = []
        inserted: list[str] = []
        definitions: dict[str, Any] = {}
        handled: set[str] = set()
        try:
            with self.repo.transaction() as session:
                rows = {r.name: r for r in self.repo.task_rows(session, [s.name for s in slots])}
                planned = 0
                for slot in slots:
                    if planned >= self.batch_size and slot.entry is None:
                        # A catch-up can give each task many occurrences: keep one batch to
                        # about ``batch_size`` sends (a clean stop waits for the batch under
                        # way); the other due tasks go back and come next, at once.
                        self.heap.push(slot)
                        handled.add(slot.name)
                        continue
                    handled.add(slot.name)
                    row = rows.get(slot.name)
                    if row is None or row.enabled is not True and row.enabled != 1 \
                            or row.paused_at is not None:
                        self.heap.remove(slot.name)  # removed, disabled or paused meanwhile
                        continue
                    if row.revision != slot.revision:
                        # Changed since we loaded it: follow the new definition (due now or
                        # later, the feed's slot says).
                        self.feed.apply_row(row, marks)
                        continue
                    entry = self.memory_entry(slot.name)
                    if entry is None:
                        entry, problem = send_definition(row, slot.schedule)
                        if problem:
                            marks[slot.name] = problem
                            self.heap.remove(slot.name)
                            continue
                    definitions[slot.name] = entry
                    decisions.append(self._decide(slot, now, plans.get(slot.name)))
                    planned += len(decisions[-1].plan.sends)
                self._gate(session, decisions, now)
                # The fence comes after the decisions (reads and pure work, however long a
                # catch-up): the lease row is locked only while the runs are read and written.
                leadership.check_fence(session)
                ids: list[str] = []
                for d in decisions:
                    name = d.slot.name
                    d.send_ids = [run_task_id(name, when, 0) for when, _ in d.plan.sends]
                    d.skip_ids = [run_task_id(name, s.scheduled_at, 0) for s in d.plan.skipped]
                    ids += d.send_ids + d.skip_ids
                status = self.repo.run_statuses(session, ids)
                runs: list[dict[str, Any]] = []
                for decision in decisions:
                    self._runs_of(decision, status, now, token, runs, inserted, sends, session)
                self.repo.add_runs(session, runs)
                self.repo.save_states(session, [
                    (d.slot.name, d.slot.revision,
                     ran_at.get(d.slot.name, now) if d.added else None, d.added,
                     d.plan.following) for d in decisions
                    if d.gate is None or d.gate.action != BLOCK])
        except (Fenced, _Unknown):
            raise
        except Exception as exc:
            for slot in slots:
                if slot.name not in handled:
                    self.heap.push(slot)
            if inserted:
                raise _Unknown(_Batch(decisions, sends, inserted, definitions, now,
                                      dict(ran_at)), exc) from exc
            for decision in decisions:
                self.heap.push(decision.slot)
            raise
        finally:
            self.feed.save_marks(marks)
        return _Batch(decisions, sends, inserted, definitions, now, dict(ran_at))

    def _runs_of(self, decision: _Decision, status: dict[str, str], now: datetime,
                 token: int | None, runs: list[dict[str, Any]], inserted: list[str],
                 sends: list[Send], session: Any) -> None:
        """The run rows and sends of one decision (statuses already known in ``status``)."""
        name = decision.slot.name
        verdict = decision.gate
        action = verdict.action if verdict is not None else "send"
        for (when, kind), task_id in zip(decision.plan.sends, decision.send_ids):
            known = status.get(task_id)
            if known not in (None, PENDING, BLOCKED):
                continue  # sent before (by a crashed beat or an earlier leader)
            if action in (SKIP, BLOCK, BUFFER):
                new = {SKIP: SKIPPED, BLOCK: BLOCKED, BUFFER: BUFFERED}[action]
                reason = verdict.reason if verdict is not None else None
                if known is None:
                    runs.append(self._run_row(name, task_id, when, kind, new, now, token,
                                              reason=reason))
                    inserted.append(task_id)
                    status[task_id] = new
                elif known == BLOCKED and new != BLOCKED:
                    self.repo.set_status(session, [task_id], old=[BLOCKED], new=new,
                                         reason=reason)
                if action == BUFFER:
                    decision.added += 1  # it will be sent when the running run finishes
                continue
            if known is None:
                runs.append(self._run_row(name, task_id, when, kind, PENDING, now, token))
                inserted.append(task_id)
                status[task_id] = PENDING
                decision.added += 1
            elif known == BLOCKED:
                self.repo.set_status(session, [task_id], old=[BLOCKED], new=PENDING)
                decision.added += 1
            sends.append(Send(task_id, name, when, 0, kind,
                              finishes=decision.plan.following is None
                              and decision.broken is None))
        for skip, task_id in zip(decision.plan.skipped, decision.skip_ids):
            if task_id not in status:
                runs.append(self._run_row(name, task_id, skip.scheduled_at, "skipped",
                                          SKIPPED, now, token, reason=_skip_reason(skip)))
                inserted.append(task_id)
                status[task_id] = SKIPPED

    def _gate(self, session: Any, decisions: list[_Decision], now: datetime) -> None:
        """Judge decisions of tasks with dependencies or an overlap rule (run states read
        in the record transaction, the verdict from :func:`celery_beatx.policies.gate`)."""
        gated = [d for d in decisions if d.plan.sends and d.slot.policy is not None
                 and d.slot.policy.gated]
        if not gated:
            return
        names = [d.slot.name for d in gated]
        upstream_names = sorted({u for d in gated for u in d.slot.policy.depends_on})
        overlapping = [d.slot.name for d in gated if d.slot.policy.overlap != "allow"]
        running = self.repo.running_counts(session, overlapping) if overlapping else {}
        buffered = self.repo.names_with_status(session, overlapping, BUFFERED) \
            if overlapping else set()
        previous = self.repo.last_sent_at(session, names) if upstream_names else {}
        finished = self.repo.latest_finished(session, upstream_names) if upstream_names \
            else {}
        upstream = {n: Upstream(*finished[n]) for n in finished}
        for decision in gated:
            slot, policy = decision.slot, decision.slot.policy
            first = decision.plan.sends[0][0]
            decision.gate = gate(
                scheduled=first, following=decision.plan.following, now=now,
                depends_on=policy.depends_on, upstream=upstream,
                previous_sent_at=previous.get(slot.name), overlap=policy.overlap,
                running=running.get(slot.name, 0), buffered=slot.name in buffered)
            if decision.gate.action == BLOCK:
                slot.blocked = first
            else:
                slot.blocked = None

    def _decide(self, slot: Slot, now: datetime, given: DuePlan | None) -> _Decision:
        if given is not None:
            return _Decision(slot, given)
        assert slot.next_at is not None and slot.schedule is not None
        policy = slot.policy
        catchup = policy.catchup if policy else "once"
        limit = policy.catchup_limit if policy else 100
        jitter = policy.jitter if policy else 0.0
        schedule: BaseSchedule = slot.schedule
        if slot.blocked is not None and slot.blocked == slot.next_at:
            # Checked again while it waits for a dependency: the wait is not downtime, so
            # no catch-up; it expires when the next occurrence is due (see policies.gate).
            try:
                following = schedule.next_after(slot.next_at, slot.next_at)
            except Exception as exc:
                return _Decision(slot, DuePlan(((slot.next_at, SCHEDULED),), None),
                                 broken=f"{type(exc).__name__}: {exc}")
            return _Decision(slot, DuePlan(((slot.next_at, SCHEDULED),), following))
        try:
            plan = plan_due(schedule, slot.next_at, now, catchup=catchup, catchup_limit=limit,
                            grace=self.grace, starting_deadline=self._deadline_for(schedule),
                            delay=_jitter_fn(slot.name, jitter))
        except Exception as exc:  # a broken schedule must not stop beat
            # The due occurrence was computed while the schedule still worked: send it,
            # then take the task out of the loop as invalid.
            return _Decision(slot, DuePlan(((slot.next_at, SCHEDULED),), None),
                             broken=f"{type(exc).__name__}: {exc}")
        return _Decision(slot, plan)

    def _deadline_for(self, schedule: BaseSchedule) -> float | None:
        if self.starting_deadline is None:
            return None
        return self.starting_deadline if getattr(schedule, "type", "") in (
            "crontab", "cron") else None

    def _run_row(self, name: str, task_id: str, when: datetime, kind: str, status: str,
                 now: datetime, token: int | None, reason: str | None = None
                 ) -> dict[str, Any]:
        return {"task_name": name, "task_id": task_id, "scheduled_at": when, "attempt": 0,
                "status": status, "kind": kind, "token": token, "reason": reason,
                "instance_id": self.instance_id, "created_at": now}

    def _after_record(self, batch: _Batch) -> int:
        """Apply a committed record to the slots, then publish and confirm its sends."""
        for decision in batch.decisions:
            slot, plan = decision.slot, decision.plan
            if decision.gate is not None and decision.gate.action == BLOCK:
                slot.fire_at = batch.now.timestamp() + RECHECK
                self.heap.push(slot)
                continue
            if decision.added:
                slot.last_run_at = batch.ran_at.get(slot.name, batch.now)
                slot.runs += decision.added
            slot.next_at = plan.following
            slot.fire_at = fire_at(slot.name, plan.following, slot.policy)
            if plan.following is None:
                self.heap.remove(slot.name)
            else:
                self.heap.push(slot)
            if decision.broken:
                self.logger.error("beat: task %r is invalid and is skipped: %s", slot.name,
                                  decision.broken)
                self.heap.remove(slot.name)
        published = self._publish_all(batch.sends, batch.definitions)
        broken = {d.slot.name: d.broken for d in batch.decisions if d.broken}
        if broken:
            self.feed.save_marks(dict(broken))
        self._prune(d.slot for d in batch.decisions if d.added)
        return published

    # -- sending ---------------------------------------------------------------------------

    def drain_unsent(self) -> int:
        """Publish up to ``max_in_flight`` recorded-but-unsent runs; returns how many left."""
        chunk: list[Send] = []
        while self.unsent and len(chunk) < self.max_in_flight:
            chunk.append(self.unsent.popleft())
        if not chunk:
            return 0
        try:
            with self.repo.transaction(readonly=True) as session:
                rows = {r.name: r for r in self.repo.task_rows(session, {s.name for s in chunk})}
                status = self.repo.run_statuses(session, [s.task_id for s in chunk])
        except Exception as exc:
            self.unsent.extendleft(reversed(chunk))
            self.db.failed(exc, "reading runs to re-send")
            return 0
        self.db.succeeded()
        definitions: dict[str, Any] = {}
        ready: list[Send] = []
        gone = _Marks()
        for send in chunk:
            if status.get(send.task_id) != PENDING:
                continue  # settled meanwhile
            entry = self.memory_entry(send.name)
            row = rows.get(send.name)
            if entry is None:
                if row is None:
                    gone.failed.append((send.task_id, "task was removed"))
                    continue
                entry, broken = send_definition(row)
                if broken:
                    gone.failed.append((send.task_id, "task definition is invalid"))
                    continue
            definitions[send.name] = entry
            ready.append(send)
        if gone and not self._confirm(gone) and self.unconfirmed:
            self.unsent.extendleft(reversed(ready))  # the database is failing: later
            return 0
        return self._publish_all(ready, definitions)

    def _publish_all(self, sends: Sequence[Send], definitions: dict[str, Any]) -> int:
        published = 0
        for start in range(0, len(sends), self.max_in_flight):
            if start:
                self.leadership.renew_if_due()
            chunk = sends[start:start + self.max_in_flight]
            done, rest = self._publish_chunk(chunk, definitions)
            published += done
            if rest is None and self.unconfirmed:
                # The database did not take this chunk's marks: publish no more until it
                # does, so at most one chunk (``max_in_flight``) is out and unconfirmed.
                rest = []
            if rest is not None:
                rest += sends[start + self.max_in_flight:]
                if self.leadership.may_send() and not self.closing():
                    # Broker down (or marks not written): re-sent when it is back, first,
                    # so that runs keep their time order.
                    self.unsent.extendleft(reversed(rest))
                return published
        return published

    def _publish_chunk(self, chunk: Sequence[Send], definitions: dict[str, Any]
                       ) -> tuple[int, list[Send] | None]:
        """Publish one chunk and confirm it; returns (published, the sends of the chunk
        left for later, in time order, or ``None`` when none was)."""
        marks = self.in_flight = _Marks()
        rest: list[Send] | None = None
        batch = None if self.batching_refused else self.open_batch(len(chunk))
        held: list[Send] = []  # handed to the batch: published once it is flushed
        error: BaseException | None = None
        try:
            for index, send in enumerate(chunk):
                if self.closing() or not self.leadership.may_send() or self.broker.down:
                    rest = list(chunk[index:])
                    break
                outcome, detail = self.publish(definitions[send.name], send)
                if outcome == BATCH_REFUSED:
                    # End the batch; this message and the rest of the chunk go one by one.
                    left = self._end_batch(batch, held, marks) if batch is not None else []
                    batch = None
                    if left:
                        rest = left + list(chunk[index:])
                        break
                    outcome, detail = self.publish(definitions[send.name], send)
                if outcome == BROKER_DOWN:
                    self.broker.failed(detail, "sending due tasks", unreachable=True)
                    rest = list(chunk[index:])
                    break
                if outcome == SENT and batch is not None:
                    held.append(send)
                    continue
                _mark(marks, send, outcome, detail)
            if batch is not None:
                left = self._end_batch(batch, held, marks)
                batch = None
                if left:
                    rest = left + (rest or [])
        except BaseException as exc:
            error = exc
            raise
        finally:
            if batch is not None:  # an exception: what the batch holds is discarded
                with contextlib.suppress(Exception):
                    batch.close(error)
            self.in_flight = _Marks()
            if marks:
                self._confirm(marks)
        return len(marks.sent), rest

    def _end_batch(self, batch: PublishBatch, held: list[Send], marks: _Marks) -> list[Send]:
        """Flush and close the chunk's transport batch; returns the sends to publish later.

        Flushed: the held sends join ``marks``.  A flush that failed for the connection
        leaves their delivery unknown: they are returned (sent again, same ids, when the
        broker answers).  One the broker refused otherwise (a command error: the other
        messages did arrive) makes this beat stop batching, since it would happen again, and
        its sends are returned too: re-sent at once from :attr:`unsent`, one message at a
        time, each with its own outcome (so this chunk can arrive twice, with the same ids).
        """
        try:
            batch.flush()
        except Exception as exc:
            with contextlib.suppress(Exception):
                batch.close(exc)
            error = getattr(exc, "error", exc)
            if getattr(exc, "unreachable", True):
                self.broker.failed(error, "sending due tasks", unreachable=True)
                self.logger.warning(
                    "beat: %d message(s) may not have reached the broker (its batch "
                    "failed: %s); they are sent again with the same task ids when it "
                    "answers", len(held), error)
                return held
            self.batching_refused = True
            self.logger.error(
                "beat: the broker refused a batch of %d message(s) (%s); publishing them "
                "again one at a time, and every message on its own from now on",
                len(held), error)
            return held
        with contextlib.suppress(Exception):
            batch.close(None)
        for send in held:
            _mark(marks, send, SENT, None)
        return []

    # -- confirming ------------------------------------------------------------------------

    def _confirm(self, marks: _Marks) -> bool:
        """Write the marks of published (or failed) runs.

        While this beat leads the write is fenced.  A beat that lost the lease still writes
        its ``sent`` marks, unfenced: they only move ``pending`` runs forward and record what
        did happen (the message left), so the next leader does not send those runs again.
        Its failures are not written (the runs stay pending: the leader sends them and
        records its own outcome), and it finishes only one-offs whose run it moved on.
        """
        leadership = self.leadership
        now = self.clock()
        fenced = leadership.may_send()
        try:
            with self.repo.transaction() as session:
                finishing = marks.finishing
                if fenced:
                    leadership.check_fence(session)
                else:
                    # Without the lease only what happened is written: the messages that
                    # left.  A failure stays pending for the leader to send and judge, and
                    # only one-offs whose run this write moves on are finished.
                    finishing = finishing & self.repo.pending_of(session, marks.sent) \
                        if marks.sent else set()
                if marks.sent:
                    self.repo.mark_runs(session, marks.sent, status="sent", at=now)
                for task_id, error in marks.failed if fenced else ():
                    self.repo.mark_runs(session, [task_id], status="send_failed", at=now,
                                        error=error)
                if finishing:
                    self.repo.finish_tasks(session, sorted(finishing), now)
        except Fenced:
            leadership.lost_fence()
            return self._confirm(marks)  # no longer leader: written unfenced
        except Exception as exc:
            self.unconfirmed.extend(marks)
            self.db.failed(exc, f"marking {len(marks.sent) + len(marks.failed)} run(s) sent")
            return False
        self.db.succeeded()
        return True

    def flush(self) -> bool:
        """Write marks that could not be written before; True when none is left."""
        if not self.unconfirmed:
            return True
        marks, self.unconfirmed = self.unconfirmed, _Marks()
        return self._confirm(marks)

    # -- recovery --------------------------------------------------------------------------

    def recover(self, live: set[str] | None) -> int:
        """Queue the ``pending`` runs that no live beat is responsible for; returns how many.

        With the leader lease every other beat's pending run is orphaned (its lease ran out
        or was released); without it (``live`` given) only those of beats whose heartbeat
        expired or that shut down.  They are re-sent with their own task ids.
        """
        try:
            with self.repo.transaction(readonly=True) as session:
                pending = self.repo.pending_runs(session)
                stopped = {i.instance_id for i in self.repo.instances(session)
                           if i.stopped_at is not None}
        except Exception as exc:
            self.db.failed(exc, "looking for runs left pending")
            return 0
        mine = self.held_ids()
        orphans: dict[str, int] = {}
        for run in pending:
            owner = run.instance_id or "?"
            if run.task_id in mine:
                continue
            if live is not None and owner in live and owner != self.instance_id:
                continue  # a live beat (beatx_ha off) is still working on it
            orphans[owner] = orphans.get(owner, 0) + 1
            self.unsent.append(Send(run.task_id, run.task_name, run.scheduled_at, run.attempt,
                                    run.kind or SCHEDULED, finishes=True))
        for owner, count in orphans.items():
            if owner == "?":
                self.logger.info("beat: sending %d run(s) queued through the admin API "
                                 "(run_now, backfill)", count)
            elif owner in stopped:
                self.logger.info("beat: %d run(s) were left pending by a shutdown of %s; "
                                 "sending them now", count, owner)
            else:
                self.logger.warning("beat: %d run(s) were left pending by %s, which stopped "
                                    "without confirming them (a crash or a lost lease); "
                                    "re-sending them with their own task ids", count, owner)
        return sum(orphans.values())

    def shutdown(self) -> None:
        """Clean stop in the middle of a chunk: confirm what already left.  (Messages in
        the chunk's transport batch are flushed and confirmed by the sending thread, which
        stops the chunk at its next message.)"""
        marks = self.in_flight
        self.in_flight = _Marks()
        marks.extend(self.unconfirmed)
        self.unconfirmed = _Marks()
        if marks:
            self._confirm(marks)

    # -- history ---------------------------------------------------------------------------

    def _prune(self, slots: Iterable[Slot]) -> None:
        """Keep ``beatx_history_keep`` runs per task (``0``: keep all).

        Pruning a task every ``min(keep, 100)`` runs bounds its history to fewer than
        ``keep + 100`` rows at the cost of one DELETE per task per hundred sends.
        """
        keep = self.history_keep
        if keep <= 0:
            return
        step = min(keep, 100)
        names = sorted(s.name for s in slots if s.runs % step == 0)
        if not names:
            return
        try:
            with self.repo.transaction() as session:
                for name in names:
                    self.repo.prune_runs(session, name, keep)
        except Exception as exc:
            self.logger.debug("beat: could not prune run history (%s); trying later", exc)


class _Unknown(Exception):
    """The record transaction failed at a point where it may have committed."""

    def __init__(self, batch: _Batch, error: BaseException) -> None:
        super().__init__(str(error))
        self.batch = batch
        self.error = error


def _mark(marks: _Marks, send: Send, outcome: str, detail: Any) -> None:
    """Note the outcome of one publish in ``marks``."""
    if outcome == SENT:
        marks.sent.append(send.task_id)
    else:
        marks.failed.append((send.task_id, str(detail)))
    if send.finishes:
        marks.finishing.add(send.name)


def _jitter_fn(name: str, jitter: float) -> Callable[[datetime], float] | None:
    if jitter <= 0:
        return None
    from ..policies import jitter_offset

    return lambda when: jitter_offset(name, when, jitter)


def _skip_reason(skip: Skipped) -> str:
    more = f" (and at least {skip.count - 1} more)" if skip.count > 1 else ""
    return f"{skip.reason}{more}"
