"""Custom schedules: fire times computed by a registered Python function.

Register a function once per process (in the module that defines your Celery app, so that
beat and the admin API both import it)::

    @register_schedule("second_tuesday")
    def second_tuesday(last_run_at, now, hour=9):
        ...  # return an aware datetime strictly after ``now``, or None for "never again"

and use ``custom("second_tuesday", hour=10)`` as a schedule. Only the name and the
parameters are stored, so a ``custom`` can be built (and stored) in a process where the
function is not registered; computing a fire time there raises :class:`InvalidSchedule`,
which the scheduler reports as an invalid task without stopping beat.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from ..errors import InvalidSchedule
from .base import UTC, BaseSchedule, register_kind, require_aware

__all__ = ["custom", "is_registered", "register_schedule", "unregister_schedule"]


class ScheduleFunction(Protocol):
    """``fn(last_run_at, now, **params) -> datetime | None``."""

    def __call__(self, last_run_at: datetime | None, now: datetime,
                 **params: Any) -> datetime | None: ...


_REGISTRY: dict[str, Callable[..., datetime | None]] = {}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchedule(f"custom schedule name {name!r} is not a non-empty string", "name")
    return name


def register_schedule(name: str) -> Callable[[ScheduleFunction], ScheduleFunction]:
    """Decorator: register ``fn(last_run_at, now, **params) -> datetime | None`` as ``name``.

    ``last_run_at`` is the task's last run (``None``: never), ``now`` the instant the next
    fire time must be strictly after (aware UTC); the function returns an aware datetime
    strictly after ``now``, or ``None`` for "never again". Registering a name again
    replaces the previous function (so re-importing a module is harmless).

    :raises InvalidSchedule: ``name`` is not a non-empty string.
    """
    _check_name(name)

    def decorator(fn: ScheduleFunction) -> ScheduleFunction:
        if not callable(fn):
            raise TypeError(f"custom schedule {name!r}: {fn!r} is not callable")
        _REGISTRY[name] = fn
        return fn

    return decorator


def unregister_schedule(name: str) -> None:
    """Forget the function registered as ``name`` (no error if there is none)."""
    _REGISTRY.pop(name, None)


def is_registered(name: str) -> bool:
    """Whether a function is registered as ``name`` in this process."""
    return name in _REGISTRY


def _check_json(value: Any, path: str) -> None:
    """Reject what JSON cannot carry losslessly (non-str keys, NaN, sets, objects...)."""
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidSchedule(f"custom param {path} {value!r} is not finite", "params")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidSchedule(
                    f"custom param {path} key {key!r} is not a string", "params")
            _check_json(item, f"{path}[{key!r}]")
        return
    raise InvalidSchedule(
        f"custom param {path} {value!r} is not JSON-serialisable", "params")


@register_kind
class custom(BaseSchedule):  # noqa: N801 - lowercase like the other schedule kinds
    """A schedule computed by the function registered as ``name`` (:func:`register_schedule`).

    :meth:`next_after` calls ``fn(last_run_at, after, **params)``. The parameters are stored
    in their JSON form (tuples become lists) and every call gets a fresh copy.

    Errors, all :class:`InvalidSchedule` naming ``name`` (beat marks only that task invalid):
    the name is not registered in this process; the function raises (the original exception
    is chained); it returns something other than ``None`` or an aware datetime strictly
    after ``after``.

    :param name: the registered name (need not be registered yet when constructing).
    :param params: JSON-serialisable keyword arguments for the function.
    :raises InvalidSchedule: ``name`` not a non-empty string, or a parameter JSON cannot carry.
    """

    type = "custom"

    def __init__(self, name: str, /, **params: Any) -> None:
        self._name = _check_name(name)
        for key, value in params.items():
            _check_json(value, repr(key))
        self._params_json = json.dumps(params, sort_keys=True, allow_nan=False)

    name = property(lambda self: self._name, doc="The registered function's name.")

    @property
    def params(self) -> dict[str, Any]:
        """A copy of the parameters, in their JSON form."""
        return json.loads(self._params_json)  # type: ignore[no-any-return]

    @property
    def registered(self) -> bool:
        """Whether the function is registered in this process."""
        return is_registered(self._name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError("custom is immutable")
        super().__setattr__(name, value)

    def check(self) -> None:
        """:raises InvalidSchedule: the function is not registered in this process."""
        if self._name not in _REGISTRY:
            raise InvalidSchedule(f"custom schedule {self._name!r} is not registered", "name")

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """``fn(last_run_at, after, **params)``, checked (see the class docs)."""
        after = require_aware(after, "after")
        if last_run_at is not None:
            last_run_at = require_aware(last_run_at, "last_run_at")
        fn = _REGISTRY.get(self._name)
        if fn is None:
            raise InvalidSchedule(f"custom schedule {self._name!r} is not registered", "name")
        try:
            result = fn(last_run_at, after, **self.params)
        except Exception as exc:
            raise InvalidSchedule(
                f"custom schedule {self._name!r} raised {type(exc).__name__}: {exc}",
                "name") from exc
        if result is None:
            return None
        if not isinstance(result, datetime) or result.tzinfo is None \
                or result.tzinfo.utcoffset(result) is None:
            raise InvalidSchedule(
                f"custom schedule {self._name!r} returned {result!r}, "
                "not an aware datetime or None", "name")
        result = result.astimezone(UTC)
        if result <= after:
            raise InvalidSchedule(
                f"custom schedule {self._name!r} returned {result.isoformat()}, "
                f"not after {after.isoformat()}", "name")
        return result

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form: the name and the parameters."""
        return {"type": self.type, "name": self._name, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> custom:
        """Rebuild from :meth:`to_dict` output."""
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidSchedule(f"params {params!r} is not a mapping", "params")
        return cls(data.get("name"), **params)  # type: ignore[arg-type]
