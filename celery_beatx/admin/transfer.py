"""Export and import of the whole task set (``celery-beatx/1`` JSON documents)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from ..definitions import DEFINITION_FIELDS, check_source
from ..errors import InvalidSchedule, TaskExists
from ..gcpause import gc_paused
from ..store.models import NAME_LENGTH
from ..store.repository import FLUSH_BYTES, json_bytes
from ..store.rows import definition_of
from ..values import COUNT_MAX
from ._base import AdminBase
from .pausing import REASON_MAX

UTC = timezone.utc
EXPORT_FORMAT = "celery-beatx/1"
#: State keys of an exported task (``version`` is the exporting database's: an imported
#: task gets its own version history, so it is read for information only).
STATE_KEYS = ("name", "enabled", "source", "version", "last_run_at", "total_run_count",
              "next_run_at", "paused_at", "paused_reason", "paused_by")
#: Every key a task of a ``celery-beatx/1`` document may have.
TASK_KEYS = frozenset(DEFINITION_FIELDS) | frozenset(STATE_KEYS)
#: Keys of the document itself.
DOCUMENT_KEYS = frozenset({"format", "exported_at", "tasks"})
#: The years a stored time may fall in (MariaDB's DATETIME ends with 9999).
YEARS = (1970, 9998)


class TransferMixin(AdminBase):
    """``export_state`` / ``import_state`` of :class:`~celery_beatx.BeatAdmin`."""

    def export_state(self) -> str:
        """All tasks, definition and state, as a JSON document (``celery-beatx/1``)."""
        with self._tx(readonly=True) as session:
            rows = self.repo.list_tasks(session)
            tasks = [dict(definition_of(r), name=r.name, enabled=r.enabled, source=r.source,
                          version=r.version, last_run_at=_iso(r.last_run_at),
                          total_run_count=r.total_run_count, next_run_at=_iso(r.next_run_at),
                          paused_at=_iso(r.paused_at),
                          paused_reason=r.paused_reason if r.paused_at else None,
                          paused_by=r.paused_by if r.paused_at else None)
                     for r in rows]
        # One task per line: a diff of two exports shows the tasks that changed, and each
        # line goes through json's C encoder (``indent`` would take the pure-Python one,
        # about half of a 10,000-task export's time).
        head = (f'{{"exported_at": {json.dumps(_iso(self._now()))}, '
                f'"format": {json.dumps(EXPORT_FORMAT)}, "tasks": [')
        if not tasks:
            return head + "]}"
        return head + "\n" + ",\n".join(
            "  " + json.dumps(t, sort_keys=True, default=repr) for t in tasks) + "\n]}"

    @gc_paused()  # the document, specs and rows built here all stay alive
    def import_state(self, document: str | Mapping[str, Any], mode: str = "merge") -> int:
        """Load an :meth:`export_state` document; returns how many tasks were written.

        ``merge`` adds new tasks and updates existing ones; ``replace`` also removes tasks
        the document does not name.  Everything is validated first: on any error nothing
        is written.
        """
        if mode not in ("merge", "replace"):
            raise InvalidSchedule(f"mode {mode!r} is not 'merge' or 'replace'", "mode")
        doc = _parse_document(document)
        prepared: list[tuple[dict[str, Any], dict[str, Any]]] = []
        seen: set[str] = set()
        now = self._now()
        for i, item in enumerate(doc["tasks"]):
            if not isinstance(item, Mapping):
                raise InvalidSchedule(f"tasks[{i}] is not an object", "tasks")
            where = f"tasks[{i}] ({item.get('name')!r})"
            try:
                unknown = sorted(k for k in item if k not in TASK_KEYS)
                if unknown:
                    raise InvalidSchedule(f"key {unknown[0]!r} is not a task key of "
                                          f"{EXPORT_FORMAT!r}", unknown[0])
                fields = {k: item[k] for k in DEFINITION_FIELDS if k in item}
                spec = self._prepare(item.get("name"), item.get("task"), item.get("schedule"),
                                     fields, item.get("enabled", True), now)
                state = _import_state_fields(item)
                state["source"] = check_source(item.get("source", "import"))
            except InvalidSchedule as exc:
                raise InvalidSchedule(f"{where}: {exc}", exc.field) from None
            if spec["name"] in seen:
                raise TaskExists(f"{where}: task is given twice")
            seen.add(spec["name"])
            prepared.append((spec, state))
        return self._write(lambda session: self._import(session, prepared, seen, mode, now))

    def _import(self, session: Session, prepared: list[tuple[dict[str, Any], dict[str, Any]]],
                seen: set[str], mode: str, now: datetime) -> int:
        prepared = [(spec, dict(state)) for spec, state in prepared]  # a retry starts afresh
        existing = {r.name: r for r in self.repo.all_tasks(session)}
        edges = {s["name"]: s["depends_on"] for s, _ in prepared}
        known = seen | (set() if mode == "replace" else set(existing))
        if mode == "replace":
            stale = [existing[n] for n in existing if n not in seen]
        else:
            stale = []
        for row in stale:  # drop them first so the dependency graph is the new one
            self.repo.set_dependencies(session, row.name, [])
        self._check_dependencies(session, {k: v for k, v in edges.items() if v}, known)
        revision = self.repo.next_revision(session)
        for row in stale:
            session.expunge(row)
        if stale:
            self.repo.remove_tasks(session, [r.name for r in stale], revision, now)
        new = [(spec, state.pop("source")) for spec, state in prepared
               if spec["name"] not in existing]
        self._insert(session, new, now, revision,
                     {spec["name"]: state for spec, state in prepared
                      if spec["name"] not in existing})
        pending = 0
        for spec, state in prepared:
            if spec["name"] not in existing:
                continue  # inserted above, with its state
            row = existing[spec["name"]]
            state.pop("source")
            self._apply(session, row, {k: spec[k] for k in (*DEFINITION_FIELDS, "enabled")},
                        now, "imported", revision)
            row.revision = revision
            pending += json_bytes(spec)
            if pending > FLUSH_BYTES:  # bounded statements (see FLUSH_BYTES)
                session.flush()
                pending = 0
            for key, value in state.items():
                setattr(row, key, value)
        session.flush()
        return len(prepared)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _parse_document(document: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(document, (str, bytes)):
        try:
            doc = json.loads(document)
        except ValueError as exc:
            raise InvalidSchedule(f"document is not valid JSON: {exc}", "document") from None
    else:
        doc = document
    if not isinstance(doc, Mapping) or doc.get("format") != EXPORT_FORMAT:
        fmt = doc.get("format") if isinstance(doc, Mapping) else None
        raise InvalidSchedule(f"format {fmt!r} is not {EXPORT_FORMAT!r}", "format")
    if not isinstance(doc.get("tasks"), list):
        raise InvalidSchedule("tasks must be a list", "tasks")
    unknown = sorted(str(k) for k in doc if k not in DOCUMENT_KEYS)
    if unknown:
        raise InvalidSchedule(f"document key {unknown[0]!r} is not one of "
                              f"{sorted(DOCUMENT_KEYS)}", unknown[0])
    return doc


def _import_state_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key in ("last_run_at", "next_run_at", "paused_at"):
        value = item.get(key)
        if value is None:
            continue
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise InvalidSchedule(f"{key} {value!r} is not an ISO datetime", key) from None
        if parsed.tzinfo is None:
            raise InvalidSchedule(f"{key} {value!r} is a naive datetime", key)
        parsed = parsed.astimezone(UTC)
        if not YEARS[0] <= parsed.year <= YEARS[1]:
            raise InvalidSchedule(f"{key} {value!r} is outside the years {YEARS[0]}-"
                                  f"{YEARS[1]}", key)
        state[key] = parsed
    count = item.get("total_run_count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= COUNT_MAX:
        raise InvalidSchedule(f"total_run_count {count!r} must be an integer from 0 to "
                              f"{COUNT_MAX}", "total_run_count")
    state["total_run_count"] = count
    # The pause (section "pause and backfill"): a document that says nothing about it leaves
    # a task's pause as it is; ``paused_at: null`` says the task is not paused.
    if "paused_at" in item:
        paused = "paused_at" in state
        for key, limit in (("paused_reason", REASON_MAX), ("paused_by", NAME_LENGTH)):
            value = item.get(key)
            if value is not None and not isinstance(value, str) or \
                    isinstance(value, str) and (len(value) > limit or "\x00" in value):
                raise InvalidSchedule(f"{key} {value!r:.60} must be a string of at most "
                                      f"{limit} characters without NUL", key)
            state[key] = (value or ("" if key == "paused_reason" else None)) if paused \
                else None
        if not paused:
            state["paused_at"] = None
    elif "paused_reason" in item or "paused_by" in item:
        raise InvalidSchedule("paused_reason and paused_by need paused_at", "paused_at")
    return state
