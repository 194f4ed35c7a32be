"""Named leases on the database clock: the public lock API and beat's leader lease."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from celery_beatx import BeatAdmin, InvalidSchedule, LockNotHeld
from celery_beatx.store import locks
from celery_beatx.store.models import Lock


def lock_row(db_url: str, name: str):  # type: ignore[no-untyped-def]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        row = conn.execute(sa.select(Lock.owner, Lock.token).where(Lock.name == name)).one()
    engine.dispose()
    return row


def test_acquire_renew_release_and_tokens_only_grow(admin, db_url):
    assert admin.try_acquire_lock("report", ttl=30, owner="a") is True
    assert admin.try_acquire_lock("report", ttl=30, owner="b") is False  # held by a
    assert admin.try_acquire_lock("report", ttl=30, owner="a") is True  # re-entrant
    assert tuple(lock_row(db_url, "report")) == ("a", 1)
    admin.renew_lock("report", ttl=30, owner="a")
    with pytest.raises(LockNotHeld, match="held by 'a'"):
        admin.renew_lock("report", ttl=30, owner="b")
    with pytest.raises(LockNotHeld):
        admin.release_lock("report", owner="b")
    admin.release_lock("report", owner="a")
    with pytest.raises(LockNotHeld):  # released: renewing it is refused
        admin.renew_lock("report", ttl=30, owner="a")
    assert admin.try_acquire_lock("report", ttl=30, owner="b") is True
    assert tuple(lock_row(db_url, "report")) == ("b", 2)  # a new holder, a higher token


def test_an_expired_lock_can_be_taken_by_another_owner(admin, db_url):
    assert admin.try_acquire_lock("short", ttl=0.2, owner="a")
    time.sleep(0.4)  # the database clock moves on
    assert admin.try_acquire_lock("short", ttl=30, owner="b") is True
    assert tuple(lock_row(db_url, "short")) == ("b", 2)
    with pytest.raises(LockNotHeld):
        admin.renew_lock("short", ttl=30, owner="a")


def test_concurrent_acquires_have_exactly_one_winner(db_url):
    admins = [BeatAdmin(url=db_url) for _ in range(6)]
    admins[0].list()  # the schema exists before the race
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(admins))

    def race(i: int) -> None:
        try:
            barrier.wait()
            results.append(admins[i].try_acquire_lock("race", ttl=30, owner=f"o{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(admins))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for a in admins:
        a.engine.dispose()
    assert not errors, errors
    assert sorted(results) == [False] * 5 + [True]


def test_lock_names_and_ttls_are_validated(admin):
    with pytest.raises(InvalidSchedule, match="celery-beatx's own"):
        admin.try_acquire_lock("beatx:leader", ttl=10)
    with pytest.raises(InvalidSchedule, match="ttl"):
        admin.try_acquire_lock("x", ttl=0)
    with pytest.raises(InvalidSchedule, match="lock name"):
        admin.try_acquire_lock("", ttl=10)


def test_a_holder_that_died_on_this_machine_is_recognised_at_once(admin, db_url):
    # A lease taken by a process of this machine that is gone now (the PID of a finished
    # child), with a long TTL: the next owner need not wait for it to run out.
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    assert admin.try_acquire_lock("job", ttl=3600, owner="dead")
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(Lock).where(Lock.name == "job").values(pid=dead_pid))
    engine.dispose()
    assert locks.holder_dead(locks.host_key(), dead_pid)
    assert admin.try_acquire_lock("job", ttl=30, owner="alive") is True
    assert tuple(lock_row(db_url, "job")) == ("alive", 2)
    # ...but a live holder of this machine (this process) is waited for
    assert admin.try_acquire_lock("job", ttl=30, owner="third") is False


def test_a_slow_take_over_renews_at_once_instead_of_losing_the_lease(admin, db_url, caplog):
    """Loading many tasks when becoming leader can take longer than a third of the lease:
    beat renews right after, instead of letting its validity lapse, losing the lease, taking
    it again and loading again (for ever, when the load is that slow)."""
    import logging
    from datetime import datetime, timezone

    from celery_beatx.beat.lease import LEADER, Leadership
    from celery_beatx.beat.outage import Outage
    from celery_beatx.store.repository import Repository

    clock = [1000.0]
    log = logging.getLogger("test.lease")
    repo = Repository(admin.engine)
    lead = Leadership(repo, "slow-one", ha=True, lease_seconds=15, heartbeat_every=5,
                      started_at=datetime.now(timezone.utc), logger=log,
                      db=Outage("database", log), mono=lambda: clock[0])
    gains = []

    def slow_gain() -> None:  # the load takes 11 s of the 15 s lease (valid for 10 s)
        gains.append(clock[0])
        clock[0] += 11

    lead.on_gain = slow_gain
    with caplog.at_level(logging.WARNING, logger="test.lease"):
        lead.maintain()
        for _ in range(5):
            clock[0] += 1
            lead.maintain()
    assert len(gains) == 1 and lead.role == LEADER and lead.may_send()
    assert not [r for r in caplog.records if "lost leadership" in r.getMessage()]
    assert any("renewing the lease now" in r.getMessage() for r in caplog.records)
    assert lock_row(db_url, "beatx:leader").owner == "slow-one"
