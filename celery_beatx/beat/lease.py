"""Leadership: the ``beatx:leader`` lease, this beat's heartbeat, and the local deadline after
which it stops sending.

With ``beatx_ha`` on, beats race for the lease (database time); the holder renews it every
third of ``beatx_lease_seconds``.  The holder considers itself leader only until two thirds of
a lease after the start of its last successful renewal (measured on the monotonic clock, which
keeps counting while the process is stopped), so a renewal that fails or comes late stops the
sending before the lease can pass to another beat.  Every state write of a send is fenced by
the lease token (:meth:`Repository.fence`), so a paused old leader that wakes up can write
nothing.  With ``beatx_ha`` off the beat is ``single``: it always sends, and warns once about
each other live beat it sees on the same database.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from ..store import locks
from ..store.repository import Repository
from .outage import Outage

LEADER_LOCK = "beatx:leader"
LEADER, STANDBY, SINGLE = "leader", "standby", "single"


class Fenced(Exception):
    """A fenced write found that this beat no longer holds the leader lease."""


class Leadership:
    """This beat's role, kept up to date by :meth:`maintain` (called every tick)."""

    def __init__(self, repo: Repository, instance_id: str, *, ha: bool, lease_seconds: float,
                 heartbeat_every: float, started_at, logger: logging.Logger,  # type: ignore[no-untyped-def]
                 db: Outage, mono: Callable[[], float] = time.monotonic) -> None:
        self.repo = repo
        self.instance_id = instance_id
        self.ha = ha
        self.lease_seconds = lease_seconds
        self.heartbeat_every = heartbeat_every
        self.started_at = started_at
        self.logger = logger
        self.db = db
        self.mono = mono
        self.role = STANDBY if ha else SINGLE
        self.token: int | None = None
        self._valid_until = float("-inf")
        self._next_lease = float("-inf")
        self._next_heartbeat = float("-inf")
        self._holder: str | None = None
        self._warned_others: set[str] = set()
        #: Called with no arguments when this beat becomes leader (or starts single).
        self.on_gain: Callable[[], None] = lambda: None
        #: Called when it stops being leader.
        self.on_loss: Callable[[], None] = lambda: None
        #: Why leadership was last lost (read by ``on_loss``, e.g. for a leader_lost alert).
        self.last_loss: str | None = None
        self._started = False

    # -- the role ------------------------------------------------------------------------

    def may_send(self) -> bool:
        """True while this beat may record and publish sends (checked before each one)."""
        if not self._started:
            return False
        if self.role == SINGLE:
            return True
        return self.role == LEADER and self.mono() < self._valid_until

    def wait(self) -> float:
        """Seconds until the next lease action (renewal or try, heartbeat) is due."""
        # Without the lease (``beatx_ha`` off) there is no lease action: only the heartbeat.
        due = min(self._next_lease, self._next_heartbeat) if self.ha else self._next_heartbeat
        return max(due - self.mono(), 0.0)

    def maintain(self) -> None:
        """Renew or try to take the lease when due, write the heartbeat when due."""
        now = self.mono()
        if self.ha:
            if self.role == LEADER and now >= self._valid_until:
                self._lose("its lease could not be renewed in time")
            if now >= self._next_lease and self.db.ready():
                self._lease_step(now)
        elif not self._started:
            self._started = True
            self.role = SINGLE
            self.on_gain()
        if self.mono() >= self._next_heartbeat and self.db.ready():
            self._heartbeat()

    def renew_if_due(self) -> None:
        """Renew the lease now if this beat leads and a renewal is due: called between two
        chunks of a long batch (a catch-up after an outage), outside any transaction, so
        sending for longer than a third of the lease does not cost the lease."""
        if self.ha and self.role == LEADER and self.mono() >= self._next_lease \
                and self.db.ready():
            self._lease_step(self.mono())

    def _lease_step(self, started: float) -> None:
        try:
            with self.repo.transaction() as session:
                if self.role == LEADER:
                    state = locks.renew(self.repo, session, LEADER_LOCK, self.instance_id,
                                        self.lease_seconds, self.token)
                else:
                    state = locks.acquire(self.repo, session, LEADER_LOCK, self.instance_id,
                                          self.lease_seconds)
        except Exception as exc:
            self.db.failed(exc, "renewing the leader lease" if self.role == LEADER
                           else "trying the leader lease")
            self._next_lease = self.mono() + self.db.wait()
            return
        self.db.succeeded()
        self._started = True
        if state.held:
            self._valid_until = started + self.lease_seconds * 2 / 3
            self._next_lease = started + self.lease_seconds / 3
            if self.role != LEADER or self.token != state.token:
                self.role, self.token, self._holder = LEADER, state.token, None
                self.logger.warning("beat: became leader (lease token %d, instance %s)",
                                    state.token, self.instance_id)
                self._heartbeat()
                gained = self.mono()
                self.on_gain()
                if self.role == LEADER and self.mono() >= self._next_lease:
                    # Taking over took long (loading many tasks): renew at once rather than
                    # let the validity run out, lose the lease and take it (and load) again.
                    self.logger.warning(
                        "beat: taking over took %.1f s, more than a third of "
                        "beatx_lease_seconds (%.0f s); renewing the lease now",
                        self.mono() - gained, self.lease_seconds)
                    self._lease_step(self.mono())
            return
        if self.role == LEADER:
            self._lose(f"the lease is now held by {state.owner!r}")
        # Try again in a second (a third of a short lease), or right when the holder's
        # lease runs out if that is sooner: a standby takes over as soon as it may.
        wait = min(1.0, self.lease_seconds / 3)
        remaining = (state.expires_at - state.now).total_seconds()
        if 0 <= remaining < wait:
            wait = remaining + 0.02
        self._next_lease = started + wait
        if state.owner != self._holder:
            self._holder = state.owner
            self.logger.warning("beat: standby: the leader lease is held by %r (token %d); "
                                "taking over if it is not renewed", state.owner, state.token)
            self._heartbeat()

    def _lose(self, why: str) -> None:
        self.last_loss = why
        self.role, self.token = STANDBY, None
        self._valid_until = float("-inf")
        self._next_lease = self.mono()
        self.logger.warning("beat: lost leadership (%s); sending stops", why)
        self.on_loss()

    def check_fence(self, session: Session) -> None:
        """Inside a write transaction: raise :class:`Fenced` unless this beat still holds the
        lease with its token (without HA, nothing to check).  The lease row stays locked
        until the transaction ends, so the writes that follow are the holder's."""
        if not self.ha:
            return
        if self.token is None or not self.repo.fence(session, LEADER_LOCK, self.instance_id,
                                                     self.token):
            raise Fenced()

    def lost_fence(self) -> None:
        """A fenced write found the lease gone: stop at once."""
        if self.role == LEADER:
            self._lose("a write found another holder or an expired lease")

    # -- heartbeat -------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self._next_heartbeat = self.mono() + self.heartbeat_every
        try:
            with self.repo.transaction() as session:
                now = self.repo.heartbeat(session, self.instance_id, role=self.role,
                                          started_at=self.started_at, host=locks.host_key(),
                                          pid=os.getpid(), every=self.heartbeat_every)
                others = [] if self.ha else [
                    i for i in self.repo.instances(session)
                    if i.instance_id != self.instance_id and i.stopped_at is None
                    and (now - i.heartbeat_at).total_seconds() < self.lease_seconds]
        except Exception as exc:
            self.db.failed(exc, "writing the heartbeat")
            return
        self.db.succeeded()
        for other in others:
            if other.instance_id not in self._warned_others:
                self._warned_others.add(other.instance_id)
                self.logger.error(
                    "beat: another beat instance %r is running on this database and "
                    "beatx_ha is off: both send every task. Run one beat, or turn beatx_ha "
                    "on so that only the leader sends.", other.instance_id)

    def live_instances(self) -> set[str] | None:
        """Instances whose heartbeat is recent and which did not stop (None: unknown)."""
        try:
            with self.repo.transaction(readonly=True) as session:
                now = self.repo.db_now(session)
                return {i.instance_id for i in self.repo.instances(session)
                        if i.stopped_at is None
                        and (now - i.heartbeat_at).total_seconds() < self.lease_seconds}
        except Exception as exc:
            self.db.failed(exc, "reading beat instances")
            return None

    def stop(self) -> None:
        """Clean shutdown: release the lease at once and mark this instance stopped."""
        try:
            with self.repo.transaction() as session:
                if self.ha and self.role == LEADER and self.token is not None:
                    locks.release(self.repo, session, LEADER_LOCK, self.instance_id,
                                  self.token)
                self.repo.mark_instance_stopped(session, self.instance_id)
        except Exception as exc:
            self.logger.warning("beat: could not release the leader lease at shutdown: %s",
                                exc)
        self.role, self.token = (STANDBY if self.ha else SINGLE), None
        self._valid_until = float("-inf")
