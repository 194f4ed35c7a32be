"""Named leases on the database clock, with fencing tokens.

One implementation serves beat's leader lease and ``BeatAdmin``'s public lock API.  A lease
is held by ``owner`` until ``expires_at`` (database time).  Taking a free or expired lease
increments its ``token``; a released lease keeps its row (expired at once) so tokens only
grow.  A holder that died on this very machine (same boot and PID namespace, process gone)
is recognised at once instead of after its lease runs out.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from .repository import Repository


@functools.lru_cache(maxsize=1)
def host_key() -> str:
    """This machine's boot and PID namespace: a PID means the same process only within it."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux: never judge another process dead by its PID
        return ""
    return f"{boot}:{namespace}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def holder_dead(host: str | None, pid: int | None) -> bool:
    """True only when the holder ran in this boot and PID namespace and its process is gone."""
    mine = host_key()
    return bool(mine) and host == mine and pid is not None and pid != os.getpid() \
        and _process_gone(pid)


@dataclass(frozen=True)
class LeaseState:
    """The outcome of an acquire or renew: who holds the lease, with which token, until when."""

    held: bool
    owner: str
    token: int
    expires_at: datetime
    now: datetime


def acquire(repo: Repository, session: Session, name: str, owner: str,
            ttl: float) -> LeaseState:
    """Take lease ``name`` for ``owner`` if it is free, expired, released, its holder died
    here, or already ``owner``'s (then it is extended with the same token)."""
    now = repo.db_now(session)
    expires = now + timedelta(seconds=ttl)
    lock = repo.get_lock(session, name, for_update=True)
    if lock is None:
        if repo.insert_lock(session, name, owner, now, expires, host_key(), os.getpid()):
            return LeaseState(True, owner, 1, expires, now)
        lock = repo.get_lock(session, name, for_update=True)
        if lock is None:  # created and removed again meanwhile: let the caller retry
            return LeaseState(False, "", 0, now, now)
    if lock.owner == owner and lock.expires_at > now:
        lock.expires_at = expires
        session.flush()
        return LeaseState(True, owner, lock.token, expires, now)
    if lock.expires_at <= now or holder_dead(lock.host, lock.pid):
        token = repo.take_lock(session, lock, owner, now, expires, host_key(), os.getpid())
        return LeaseState(True, owner, token, expires, now)
    return LeaseState(False, lock.owner, lock.token, lock.expires_at, now)


def renew(repo: Repository, session: Session, name: str, owner: str, ttl: float,
          token: int | None = None) -> LeaseState:
    """Extend ``owner``'s lease.  It must still be ``owner``'s (and carry ``token`` when
    given); a lease that ran out but that nobody took since is still the owner's."""
    now = repo.db_now(session)
    lock = repo.get_lock(session, name, for_update=True)
    if lock is None or lock.owner != owner or (token is not None and lock.token != token) \
            or lock.expires_at < lock.acquired_at:  # released
        return LeaseState(False, lock.owner if lock else "", lock.token if lock else 0,
                          lock.expires_at if lock else now, now)
    lock.expires_at = now + timedelta(seconds=ttl)
    session.flush()
    return LeaseState(True, owner, lock.token, lock.expires_at, now)


def release(repo: Repository, session: Session, name: str, owner: str,
            token: int | None = None) -> bool:
    """Give up ``owner``'s lease at once (the row stays so the next token is higher)."""
    now = repo.db_now(session)
    lock = repo.get_lock(session, name, for_update=True)
    if lock is None or lock.owner != owner or (token is not None and lock.token != token) \
            or lock.expires_at < lock.acquired_at:
        return False
    # Expired, and marked released: ``expires_at`` before ``acquired_at``.
    lock.acquired_at = now
    lock.expires_at = now - timedelta(microseconds=1)
    session.flush()
    return True
