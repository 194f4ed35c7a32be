"""Beat's in-memory view of the enabled tasks: one compact :class:`Slot` per task and a heap
of their fire times.

A slot holds only what deciding *when* needs (schedule, next and last run, the policy
fields); what a send needs (task name, arguments, options) is read from the database when the
task falls due.  Heap items are ``(fire_timestamp, name)`` and are invalidated lazily: an item
whose slot moved or left is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

UTC = timezone.utc


def ts(value: datetime) -> float:
    """Seconds since the epoch of an aware datetime."""
    return value.timestamp()


def from_ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class Slot:
    """One enabled task as beat's loop holds it.

    ``next_at`` is the scheduled time of the next occurrence (its deterministic id derives
    from it); ``fire_at`` is when it is sent (``next_at`` plus its jitter).  ``entry`` is set
    for tasks driven in memory by a Celery schedule object of their own (``is_due()``).
    ``policy`` is a :class:`~celery_beatx.beat.feed.SlotPolicy` (``None``: the defaults).
    """

    __slots__ = ("name", "revision", "schedule", "next_at", "fire_at", "last_run_at",
                 "runs", "policy", "entry", "blocked")

    def __init__(self, name: str, revision: int, schedule: Any, next_at: datetime | None,
                 last_run_at: datetime | None, runs: int, policy: Any = None,
                 fire_at: float | None = None, entry: Any = None) -> None:
        self.name = name
        self.revision = revision
        self.schedule = schedule
        self.next_at = next_at
        self.fire_at = fire_at if fire_at is not None else (
            ts(next_at) if next_at is not None else None)
        self.last_run_at = last_run_at
        self.runs = runs
        self.policy = policy
        self.entry = entry
        #: The occurrence waiting for a dependency (re-checked until it may go or expires).
        self.blocked: datetime | None = None

    def __repr__(self) -> str:
        return f"Slot({self.name!r}, next={self.next_at}, fire={self.fire_at})"


class SlotHeap:
    """Slots by name plus a heap of ``(fire_at, name)``; see the module docstring."""

    def __init__(self) -> None:
        self.slots: dict[str, Slot] = {}
        #: The slots driven in memory (``entry`` set), by name; never in the heap.
        self.memory: dict[str, Slot] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, name: object) -> bool:
        return name in self.slots

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self.slots.values()))

    def get(self, name: str) -> Slot | None:
        return self.slots.get(name)

    def put(self, slot: Slot) -> None:
        """Add or replace ``slot`` and schedule it at its ``fire_at``."""
        self.slots[slot.name] = slot
        if slot.entry is not None:
            self.memory[slot.name] = slot
        else:
            self.memory.pop(slot.name, None)
        self.push(slot)

    def push(self, slot: Slot) -> None:
        """(Re)schedule a slot already held, at its current ``fire_at``."""
        if slot.entry is not None:
            return  # asked every tick, see the module docstring
        if slot.fire_at is not None and self.slots.get(slot.name) is slot:
            heapq.heappush(self._heap, (slot.fire_at, slot.name))
        if len(self._heap) > 2 * len(self.slots) + 1000:
            self._compact()

    def remove(self, name: str) -> Slot | None:
        self.memory.pop(name, None)
        return self.slots.pop(name, None)

    def clear(self) -> None:
        self.slots.clear()
        self.memory.clear()
        self._heap.clear()

    def rebuild(self) -> None:
        """Re-create the heap from the slots (after many changes, or a clock jump)."""
        self._heap = [(s.fire_at, s.name) for s in self.slots.values()
                      if s.fire_at is not None and s.entry is None]
        heapq.heapify(self._heap)

    def _compact(self) -> None:
        self.rebuild()

    def _valid_top(self) -> tuple[float, str] | None:
        heap = self._heap
        while heap:
            fire, name = heap[0]
            slot = self.slots.get(name)
            if slot is not None and slot.fire_at == fire and slot.entry is None:
                return heap[0]
            heapq.heappop(heap)
        return None

    def next_fire(self) -> float | None:
        """The earliest fire time held (a timestamp), or None."""
        top = self._valid_top()
        return top[0] if top is not None else None

    def pop_due(self, now: float, limit: int) -> list[Slot]:
        """Up to ``limit`` slots whose fire time is <= ``now``, earliest first.

        Popped slots are out of the heap until pushed again.
        """
        out: list[Slot] = []
        seen: set[str] = set()
        while len(out) < limit:
            top = self._valid_top()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._heap)
            if top[1] in seen:
                continue
            seen.add(top[1])
            out.append(self.slots[top[1]])
        return out
