"""The public lock API: named leases on the database clock (see :mod:`celery_beatx.store.locks`)."""

from __future__ import annotations

from ..config import default_instance_id
from ..errors import InvalidSchedule, LockNotHeld
from ..store import locks
from ._base import AdminBase

#: Lease names that beat itself uses: not available through the public API.
RESERVED_PREFIX = "beatx:"


class LocksMixin(AdminBase):
    """``try_acquire_lock`` / ``renew_lock`` / ``release_lock`` of :class:`~celery_beatx.BeatAdmin`.

    Each is one transaction and atomic on SQLite, PostgreSQL and MariaDB.  Expiry is judged
    by the database clock, so processes on machines whose clocks disagree still agree.
    """

    def _lock_args(self, name: str, ttl: float | None, owner: str | None) -> str:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidSchedule(f"lock name {name!r} must be a string of 1-200 characters",
                                  "name")
        if name.startswith(RESERVED_PREFIX):
            raise InvalidSchedule(f"lock name {name!r}: names starting with "
                                  f"{RESERVED_PREFIX!r} are celery-beatx's own", "name")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                                or not 0 < ttl <= 86400 * 365):
            raise InvalidSchedule(f"ttl {ttl!r} must be a number of seconds > 0", "ttl")
        return owner or self.instance_id or default_instance_id()

    def try_acquire_lock(self, name: str, ttl: float, owner: str | None = None) -> bool:
        """Take lock ``name`` for ``ttl`` seconds if it is free or expired (or already ours,
        which extends it).  Returns whether ``owner`` (default: this instance) holds it."""
        who = self._lock_args(name, ttl, owner)
        with self._tx() as session:
            return locks.acquire(self.repo, session, name, who, ttl).held

    def renew_lock(self, name: str, ttl: float, owner: str | None = None) -> None:
        """Extend a lock held by ``owner`` to ``ttl`` seconds from now.

        :raises LockNotHeld: someone else holds it, or it was released.
        """
        who = self._lock_args(name, ttl, owner)
        with self._tx() as session:
            state = locks.renew(self.repo, session, name, who, ttl)
        if not state.held:
            raise LockNotHeld(f"lock {name!r} is not held by {who!r}"
                              + (f" (held by {state.owner!r})" if state.owner else ""))

    def release_lock(self, name: str, owner: str | None = None) -> None:
        """Release a lock held by ``owner`` at once.

        :raises LockNotHeld: it is not held by ``owner``.
        """
        who = self._lock_args(name, None, owner)
        with self._tx() as session:
            released = locks.release(self.repo, session, name, who)
        if not released:
            raise LockNotHeld(f"lock {name!r} is not held by {who!r}")
