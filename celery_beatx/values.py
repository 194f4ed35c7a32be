"""The values of a task definition: what is accepted, how it is stored, how it is decoded.

Arguments (``args``, ``kwargs``) are stored with kombu's JSON encoding, the one Celery's
``json`` serializer puts on the wire: a ``datetime``, ``date``, ``time``, ``Decimal``,
``UUID`` or ``bytes`` is stored as ``{"__type__": ..., "__value__": ...}`` and decoded back
to its type for the send.  ``headers`` and ``options`` are plain JSON.  ``expires`` is a
number of seconds or an absolute time, stored in kombu's form of a ``datetime``.

Everything that would make a send fail, or silently change what a send does, is refused
here with :class:`~celery_beatx.errors.InvalidSchedule` naming the field and the value.
Pure: kombu's JSON helpers, no database, no Celery.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from kombu.utils import json as kombu_json

from .errors import InvalidSchedule

UTC = timezone.utc

#: The most bytes one JSON field (``args``, ``kwargs``, ``headers``, ``options``, ``tags``,
#: ``retry``, ...) may take once encoded: 256 KiB, the message limit of the strictest
#: common broker (Amazon SQS), well inside every database's packet size.
JSON_FIELD_MAX = 256 * 1024
#: The longest ``description``, in characters (the column is a 64 KiB ``TEXT`` on MariaDB).
DESCRIPTION_MAX = 10_000
#: Upper bound of seconds fields (``expires``, ``countdown``, time limits): ten years.
MAX_SECONDS = 10 * 365 * 86400.0
#: Upper bound of ``jitter``: one day.
JITTER_MAX = 86400.0
#: Upper bound of stored counters (``total_run_count``): a 32-bit signed integer column.
COUNT_MAX = 2**31 - 1

#: Headers Celery (or celery-beatx) sets on every message: a task header of that name would
#: replace it, and change the task id, name, expiry or time limits of the send.
RESERVED_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
    "ignore_result", "replaced_task_nesting", "stamped_headers", "stamps",
    "celery_beat_task", "beatx_run",
})

#: ``options`` keys that have a field of their own.
OWN_FIELD_OPTIONS = ("queue", "priority", "expires", "headers", "args", "kwargs")
EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")
DELIVERY_MODES = (1, 2, "transient", "persistent")
RETRY_POLICY_KEYS = ("max_retries", "interval_start", "interval_step", "interval_max")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any, field: str, *, minimum: float = 0.0, strict: bool = False,
           maximum: float = MAX_SECONDS) -> float:
    """``value`` (a number or a ``timedelta``) as a float within bounds."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not _is_number(value):
        raise InvalidSchedule(f"{field} {value!r} is not a number", field)
    if not math.isfinite(value) or value > maximum:
        raise InvalidSchedule(f"{field} {value!r} must be a finite number <= {maximum:g}",
                              field)
    if value < minimum or (strict and value <= minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InvalidSchedule(f"{field} {value!r} must be {bound}", field)
    return float(value)


def _text(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to show (Python's digit limit)
        text = f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[:limit] + "..."


def _encoded(value: Any, field: str, dumps: Callable[..., str]) -> str:
    try:
        # NaN and infinities are not JSON, and PostgreSQL and MariaDB refuse them.
        text = dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSchedule(f"{field} {_text(value)} cannot be stored as JSON: {exc}",
                              field) from None
    size = len(text.encode("utf-8"))
    if size > JSON_FIELD_MAX:
        raise InvalidSchedule(
            f"{field} {_text(value, 40)} takes {size:,} bytes as JSON; the limit is "
            f"{JSON_FIELD_MAX:,} bytes per field", field)
    return text


#: A string this short is within the size limit whatever its characters (each takes at
#: most six bytes as JSON: ``\\uXXXX``).
_SHORT_TEXT = 1000


def _trivial(value: Any) -> Any:
    """The stored form of ``value`` when it needs no JSON round trip (``None``, a bool, an
    int, a short string, an empty container), else :data:`_NOT_TRIVIAL`.  Bulk writes of
    plain tasks spend most of their validation on such values."""
    kind = type(value)
    if value is None or kind is bool or kind is int or (kind is str
                                                         and len(value) < _SHORT_TEXT):
        return value
    if (kind is list or kind is tuple) and not value:
        return []
    if kind is dict and not value:
        return {}
    return _NOT_TRIVIAL


_NOT_TRIVIAL = object()

#: A flat container of at most this many trivial scalars is within the size limit.
_FLAT_MAX = 32


def _flat(value: Any) -> Any:
    """The stored form of a short flat list, tuple or mapping of trivial scalars (``[42]``,
    ``{"region": "eu"}``): a copy, no JSON round trip; else :data:`_NOT_TRIVIAL`.

    A mapping with a ``__type__`` key takes the round trip: it may be a tagged object."""
    kind = type(value)
    if kind is list or kind is tuple:
        items: Any = value
    elif kind is dict and "__type__" not in value:
        items = value.values()
        if any(type(key) is not str or len(key) >= _SHORT_TEXT for key in value):
            return _NOT_TRIVIAL
    else:
        return _NOT_TRIVIAL
    if len(value) > _FLAT_MAX:
        return _NOT_TRIVIAL
    text = sum(len(key) for key in value) if kind is dict else 0
    for item in items:
        k = type(item)
        if k is str:
            text += len(item)
        elif not (item is None or k is bool or (k is int and -_INT_MAX <= item < _INT_MAX)):
            return _NOT_TRIVIAL
    if text * _CHAR_MAX_BYTES > JSON_FIELD_MAX // 2:
        return _NOT_TRIVIAL  # could be near the size limit: measure it
    return dict(value) if kind is dict else list(value)


#: Integers beyond 64 bits take the JSON round trip (which refuses the huge ones).
_INT_MAX = 2**63
#: The most bytes one character can take as JSON (a surrogate pair: ``\ud83d\ude00``).
_CHAR_MAX_BYTES = 12


def plain_json(value: Any, field: str) -> Any:
    """``value`` in its stored form: plain JSON (tuples become lists), within the size limit."""
    stored = _trivial(value)
    if stored is not _NOT_TRIVIAL:
        return stored
    return json.loads(_encoded(value, field, json.dumps))


def encode_arguments(value: Any, field: str) -> Any:
    """``args``/``kwargs`` in their stored form: kombu's JSON encoding, so a ``datetime``,
    ``Decimal`` or ``UUID`` comes back as itself at send time."""
    stored = _trivial(value)
    if stored is not _NOT_TRIVIAL:
        return stored
    stored = _flat(value)
    if stored is not _NOT_TRIVIAL:
        return stored
    text = _encoded(value, field, kombu_json.dumps)
    stored = json.loads(text)
    try:
        decode(stored)
    except Exception as exc:
        raise InvalidSchedule(
            f"{field} {_text(value)} holds an object of kombu's tagged form "
            f'({{"__type__": ..., "__value__": ...}}) that cannot be decoded: {exc}',
            field) from None
    return stored


def to_stored(value: Any) -> Any:
    """The stored form of a value decoded by :func:`decode` (no checks: it was stored)."""
    return json.loads(kombu_json.dumps(value))


def decode(stored: Any) -> Any:
    """Decode kombu's tagged objects in a stored value (the send gets the original types).

    :raises Exception: a tagged object kombu cannot decode (a row written by hand).
    """
    if isinstance(stored, list):
        return [decode(item) for item in stored]
    if isinstance(stored, dict):
        return kombu_json.object_hook({key: decode(item) for key, item in stored.items()})
    return stored


# -- expires ------------------------------------------------------------------------------


def expires_tag(when: Any) -> dict[str, Any]:
    """The stored form of an absolute ``expires``: kombu's form of a ``datetime`` (UTC)."""
    if isinstance(when, datetime):
        when = when.astimezone(UTC).isoformat()
    return {"__type__": "datetime", "__value__": when}


def decode_expires(stored: Any) -> float | datetime | None:
    """A stored ``expires``: seconds, an aware datetime, or ``None``.

    :raises ValueError: the stored value is neither.
    """
    if stored is None or _is_number(stored):
        return stored
    if isinstance(stored, dict):
        value = decode(stored)
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return value.astimezone(UTC)
    raise ValueError(f"stored value {stored!r:.60} is neither seconds nor an aware time")


def check_expires(value: Any, now: datetime | None) -> float | dict[str, Any] | None:
    """Validate ``expires``; returns its stored form.

    Seconds after each send (a number or ``timedelta``, > 0), or an absolute time: an aware
    ``datetime``, an ISO string with an offset, or the stored form :func:`expires_tag` gives
    (as found in an export).  An absolute time must be after ``now`` (when given).
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            value = decode(dict(value))
        except Exception:
            raise InvalidSchedule(f"expires {_text(value)} is not a time", "expires") from None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidSchedule(f"expires {value!r} is not an ISO datetime",
                                  "expires") from None
    if not isinstance(value, datetime):
        return number(value, "expires", strict=True)
    if value.utcoffset() is None:
        raise InvalidSchedule(
            f"expires {value.isoformat()!r} is a naive datetime; give it a time zone",
            "expires")
    if now is not None and value <= now:
        raise InvalidSchedule(f"expires {value.isoformat()!r} is not in the future "
                              f"(now is {now.isoformat()})", "expires")
    return expires_tag(value)


# -- headers and options ------------------------------------------------------------------


def _str_keys(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidSchedule(f"{field} {_text(value)} must be a mapping", field)
    for key in value:
        if not isinstance(key, str):
            raise InvalidSchedule(f"{field} key {key!r} is not a string", field)
    return dict(value)


def check_headers(value: Any) -> dict[str, Any]:
    """Validate message ``headers``: str keys Celery does not set itself, JSON values."""
    headers = _str_keys({} if value is None else value, "headers")
    for key in headers:
        if key in RESERVED_HEADERS:
            who = "celery-beatx" if key == "beatx_run" else "Celery"
            raise InvalidSchedule(
                f"headers key {key!r} is set by {who} on every message and cannot be given",
                "headers")
    return plain_json(headers, "headers")


def _option_bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise InvalidSchedule(f"options {key!r} value {value!r} must be True or False",
                              "options")
    return value


def _option_str(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise InvalidSchedule(f"options {key!r} value {_text(value)} must be a string",
                              "options")
    return value


def _option_seconds(strict: bool) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        return number(value, f"options {key!r}", strict=strict)
    return check


def _option_choice(choices: tuple[Any, ...]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in choices:
            raise InvalidSchedule(f"options {key!r} value {value!r} is not one of {choices}",
                                  "options")
        return value
    return check


def _option_serializer(key: str, value: Any) -> Any:
    from kombu.serialization import registry

    if not isinstance(value, str) or value not in registry.name_to_type:
        raise InvalidSchedule(
            f"options {key!r} value {value!r} is not a serializer kombu knows "
            f"({', '.join(sorted(registry.name_to_type))})", "options")
    return value


def _option_compression(key: str, value: Any) -> Any:
    from kombu import compression

    try:
        compression.get_encoder(value)
    except (KeyError, TypeError):
        raise InvalidSchedule(f"options {key!r} value {value!r} is not a compression "
                              "method kombu knows", "options") from None
    return value


def _option_retry_policy(key: str, value: Any) -> Any:
    policy = _str_keys(value, f"options {key!r}")
    for name, item in policy.items():
        if name not in RETRY_POLICY_KEYS:
            raise InvalidSchedule(f"options {key!r} key {name!r} is not one of "
                                  f"{RETRY_POLICY_KEYS}", "options")
        if name == "max_retries":
            if item is not None and (not isinstance(item, int) or isinstance(item, bool)
                                     or not 0 <= item <= COUNT_MAX):
                raise InvalidSchedule(f"options {key!r} max_retries {item!r} must be an "
                                      "integer >= 0 or None", "options")
        else:
            number(item, f"options {key!r} {name}")
    return policy


def _option_signatures(key: str, value: Any) -> Any:
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("task"), str):
            raise InvalidSchedule(
                f"options {key!r} value {_text(item)} is not a task signature (a mapping "
                "with a 'task' name, as celery.signature() gives)", "options")
    return value


#: ``apply_async`` options celery-beatx passes on with each send, with each value's check.
SEND_OPTIONS: dict[str, Callable[[str, Any], Any]] = {
    "countdown": _option_seconds(strict=False),
    "retry": _option_bool,
    "retry_policy": _option_retry_policy,
    "exchange": _option_str,
    "exchange_type": _option_choice(EXCHANGE_TYPES),
    "routing_key": _option_str,
    "serializer": _option_serializer,
    "compression": _option_compression,
    "delivery_mode": _option_choice(DELIVERY_MODES),
    "time_limit": _option_seconds(strict=True),
    "soft_time_limit": _option_seconds(strict=True),
    "shadow": _option_str,
    "ignore_result": _option_bool,
    "link": _option_signatures,
    "link_error": _option_signatures,
    "reply_to": _option_str,
    "mandatory": _option_bool,
    "timeout": _option_seconds(strict=True),
    "confirm_timeout": _option_seconds(strict=True),
    # Amazon SQS FIFO queues: the message group of every send.
    "MessageGroupId": _option_str,
}


def check_options(value: Any, own_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate ``options``: ``apply_async`` options Celery understands, JSON values.

    :param own_fields: the task's own field names, refused as options keys (with a message
        pointing at the field).
    """
    options = _str_keys({} if value is None else value, "options")
    exchange = options.get("exchange")
    if exchange is not None and not isinstance(exchange, str) and hasattr(exchange, "type"):
        # A kombu.Exchange: its name and type, as Celery would publish to it.
        options["exchange"] = exchange.name
        options.setdefault("exchange_type", exchange.type)
    for key, item in options.items():
        if key == "task_id":
            raise InvalidSchedule("options key 'task_id' cannot be given: celery-beatx "
                                  "sends each run under its own deterministic id", "options")
        if key in OWN_FIELD_OPTIONS or (key in own_fields and key not in SEND_OPTIONS):
            raise InvalidSchedule(f"options key {key!r} cannot be given: use the task's "
                                  f"{key!r} field", "options")
        if key == "eta":
            raise InvalidSchedule("options key 'eta' cannot be given: one fixed time would "
                                  "hold every run until then; use 'countdown'", "options")
        check = SEND_OPTIONS.get(key)
        if check is None:
            raise InvalidSchedule(
                f"options key {key!r} is not an apply_async option celery-beatx passes on "
                f"(one of: {', '.join(sorted(SEND_OPTIONS))})", "options")
        options[key] = check(key, item)
    return plain_json(options, "options")


def queue_routing(queue: Any) -> tuple[Any, dict[str, Any]]:
    """A ``kombu.Queue`` given as the queue: its name, and its exchange, exchange type and
    routing key as ``options``, so the send is routed the same.  Anything else is returned
    as it is (with no options)."""
    name = getattr(queue, "name", None)
    if isinstance(queue, str) or not isinstance(name, str) or not hasattr(queue,
                                                                          "routing_key"):
        return queue, {}
    routing: dict[str, Any] = {}
    exchange = getattr(queue, "exchange", None)
    if exchange is not None and getattr(exchange, "name", None):
        routing["exchange"] = exchange.name
        routing["exchange_type"] = exchange.type
    if queue.routing_key:
        routing["routing_key"] = queue.routing_key
    return name, routing
