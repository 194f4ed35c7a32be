"""Say each thing once: track whether a service (database, broker) is reachable, log one line
when it goes away and one when it is back, and space out retries meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def cause(exc: BaseException) -> str:
    """One line naming an error: its class and first line, without the driver's noise."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if orig is not None and str(orig).strip():
        text = str(orig).strip().splitlines()[0]
        return f"{type(orig).__name__}: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the service cannot be reached (rather than that we did
    something wrong): connection and timeout errors, SQLAlchemy's OperationalError."""
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (OSError, TimeoutError, sa_exc.OperationalError,
                            sa_exc.InterfaceError, sa_exc.DisconnectionError,
                            sa_exc.TimeoutError))


class Outage:
    """Reachability of one service, with a capped exponential back-off between attempts.

    :param what: the service's name in log lines ("database", "broker").
    :param first: the first retry delay; it doubles up to ``cap`` seconds.
    """

    def __init__(self, what: str, logger: logging.Logger, *, first: float = 1.0,
                 cap: float = 1.0, mono: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.logger = logger
        self.first = first
        self.cap = cap
        self.mono = mono
        self.down_since: float | None = None
        self.failures = 0
        self._retry_at = float("-inf")
        self._reported: set[tuple[str, str, str]] = set()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def ready(self) -> bool:
        """Whether an attempt may be made now (always, unless backing off)."""
        return self.mono() >= self._retry_at

    def wait(self) -> float:
        """Seconds until the next attempt is due (0 when it is)."""
        return max(self._retry_at - self.mono(), 0.0)

    def failed(self, exc: BaseException, doing: str, *, unreachable: bool | None = None) -> None:
        """An attempt failed: log the first failure of an outage (traceback once, at DEBUG
        afterwards) and back off.  ``unreachable``: the caller's verdict on whether ``exc``
        means an outage (default: :func:`is_unreachable`), e.g. for a connection error that
        Celery wrapped in an error of its own."""
        now = self.mono()
        self.failures += 1
        delay = min(self.first * 2 ** (self.failures - 1), self.cap)
        self._retry_at = now + delay
        if unreachable is None:
            unreachable = is_unreachable(exc)
        if not unreachable:
            # Not an outage but an error of ours or of the data: say it loudly, with its
            # traceback, once per kind of error; back off all the same.
            key = (doing, type(exc).__name__, str(exc)[:200])
            if key not in self._reported:
                self._reported.add(key)
                self.logger.error("beat: error while %s: %s", doing, cause(exc), exc_info=exc)
            else:
                self.logger.debug("beat: error again while %s: %s", doing, cause(exc))
            return
        if self.down_since is None:
            self.down_since = now
            self.logger.warning("beat: %s unreachable while %s: %s; retrying every %.1f s "
                                "at most", self.what, doing, cause(exc), self.cap)
            self.logger.debug("beat: %s error", self.what, exc_info=exc)
        else:
            self.logger.debug("beat: %s still unreachable while %s: %s", self.what, doing,
                              cause(exc))

    def succeeded(self) -> None:
        """An attempt worked: if the service was down, say once that it is back."""
        if self.down_since is not None:
            self.logger.warning("beat: %s reachable again after %.1f s", self.what,
                                self.mono() - self.down_since)
        self.down_since = None
        self.failures = 0
        self._retry_at = float("-inf")
