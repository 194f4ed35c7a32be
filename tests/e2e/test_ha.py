"""Active/standby beats on one database (issue 6, PRODUCT.md section 5 "HA").

The contract these tests hold the implementation to:

- with ``beatx_ha`` (the default) beats race for the ``beatx:leader`` row of ``beatx_locks``
  (columns ``owner`` = the instance id, ``token`` that grows with each new holder,
  ``expires_at``); the holder logs ``beat: became leader`` when it takes the lease, the
  others ``beat: standby``; only the holder sends, and ``beatx_runs.instance_id`` says who
  recorded a run;
- a leader killed with SIGKILL is replaced within ``beatx_lease_seconds`` + 1 s, and every
  scheduled second is still sent, each under one task id;
- a leader frozen (SIGSTOP) past its lease and then resumed sends nothing more;
- with ``beatx_ha=False`` two beats on one database are detected: a warning that names
  ``another beat instance``, once.

50 tasks run every second with ``catchup="all"``; the HA run lasts 60 s in ``make test``
(``make soak``: ``BEATX_HA_SOAK_SECONDS``, default 600, killing the leader every 20-60 s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import pytest
from faults import (
    RunRow,
    add_tasks,
    delivery_problems,
    drain,
    lease_owner,
    next_burst,
    read_lease,
    read_runs,
    run_counts,
    seeded,
    summary,
    watch,
)
from harness import Cluster, Marker, Proc

pytestmark = [pytest.mark.e2e]

BROKER = os.environ.get("BEATX_FAULT_BROKER", "redis")
DATABASE = os.environ.get("BEATX_FAULT_DB", "postgresql")
LEASE = 5.0
#: ``beatx_max_in_flight``: a killed leader may leave at most this many same-id duplicates.
MAX_IN_FLIGHT = 10
SHORT_SECONDS = 60.0
SOAK_SECONDS = float(os.environ.get("BEATX_HA_SOAK_SECONDS", "600"))
HISTORY = {"E2E_HISTORY_KEEP": "10000000"}
LEADER = "beat: became leader"
STANDBY = "beat: standby"
SENDING = "Sending due task"
#: How long a beat may take to start and settle into its role.
SETTLE = LEASE + 20.0


def start_ha_beat(cluster: Cluster, instance_id: str, role: str) -> Proc:
    """A beat with ``beatx_ha`` on; waits until it logs ``role`` (leader or standby)."""
    beat = cluster.start_beat(wait=False, instance_id=instance_id, ha=True,
                              lease_seconds=LEASE, max_in_flight=MAX_IN_FLIGHT)
    beat.wait_log(role, SETTLE)
    return beat


def takeover_problems(kills: Sequence[tuple[float, str, str]], runs: Sequence[RunRow],
                      markers: Sequence[Marker]) -> list[str]:
    """Each kill's standby sent within ``LEASE + 1`` s (seen in the markers), and no beat
    recorded a run while another one led."""
    problems: list[str] = []
    instance_of = {r.task_id: r.instance_id for r in runs}
    for moment, old, new in kills:
        after = [m.time for m in markers
                 if m.time > moment and instance_of.get(m.task_id) == new]
        if not after:
            problems.append(f"after {old} was killed, nothing sent by {new} was executed")
        elif min(after) - moment > LEASE + 1.0:
            problems.append(f"{new} took over {min(after) - moment:.1f}s after {old} was "
                            f"killed (allowed: lease {LEASE}s + 1s)")
    # Leadership periods: the first leader until the first kill, each successor from the
    # kill that made it leader.
    if kills:
        starts = {kills[0][1]: 0.0, **{new: moment for moment, _, new in kills}}
    else:
        starts = {}
    early = [r for r in runs if r.instance_id in starts
             and r.created_at.timestamp() < starts[r.instance_id]]
    strangers = [r for r in runs if r.instance_id not in starts]
    if kills and strangers:
        problems.append(f"{len(strangers)} run(s) recorded by a beat that never led: "
                        f"{strangers[:2]}")
    if early:
        problems.append(f"{len(early)} run(s) recorded by a standby before it took over: "
                        f"{early[:2]}")
    return problems


@pytest.mark.parametrize("duration", [
    pytest.param(SHORT_SECONDS, id="short", marks=pytest.mark.timeout(SHORT_SECONDS + 200)),
    pytest.param(SOAK_SECONDS, id="long",
                 marks=[pytest.mark.soak, pytest.mark.timeout(SOAK_SECONDS * 1.5 + 300)]),
])
def test_leader_killed_standby_takes_over_within_a_lease(make_cluster, admin_for, duration):
    rng = seeded("ha kill")
    cluster = make_cluster(BROKER, DATABASE, extra_env=HISTORY)
    admin = admin_for(cluster)
    worker = cluster.start_worker()
    beats = {"ha-1": start_ha_beat(cluster, "ha-1", LEADER)}
    beats["ha-2"] = start_ha_beat(cluster, "ha-2", STANDBY)
    lease = read_lease(cluster.database_url)
    assert lease is not None and lease["owner"] == "ha-1", lease
    assert "token" in lease and "expires_at" in lease, lease
    token = lease["token"]

    names, first, origin = add_tasks(admin, "h")
    start = time.time()
    end = start + duration
    kills: list[tuple[float, str, str]] = []
    problems: list[str] = []
    serial = 2
    next_kill = start + rng.uniform(10.0, 40.0)
    while next_kill < end - 15.0:
        leader = lease_owner(cluster.database_url)
        assert leader in beats, f"the lease is held by {leader!r}, not one of {list(beats)}"
        # Any moment of a second: during a burst or between two.
        watch([worker, *beats.values()], next_burst(origin, next_kill, rng.uniform(0.0, 1.0)))
        offsets = {i: p.log_size() for i, p in beats.items()}
        beats.pop(leader).kill9()
        moment = time.time()
        (standby,) = beats
        beats[standby].wait_log(LEADER, LEASE + 10.0, since=offsets[standby])
        kills.append((moment, leader, standby))
        lease = read_lease(cluster.database_url)
        assert lease is not None and lease["owner"] == standby, lease
        if not lease["token"] > token:
            problems.append(f"the lease token did not grow with the new holder: {token} -> "
                            f"{lease['token']}")
        token = lease["token"]
        # The killed beat comes back, as a standby.
        serial += 1
        beats[f"ha-{serial}"] = start_ha_beat(cluster, f"ha-{serial}", STANDBY)
        next_kill = time.time() + rng.uniform(20.0, 60.0)
    watch([worker, *beats.values()], end)
    until = time.time()
    # Standbys first: a leader stopped cleanly releases the lease at once, and a standby
    # still running would take over and send (rightly, but after the test's last kill).
    holder = lease_owner(cluster.database_url)
    for name in sorted(beats, key=lambda name: name == holder):
        beat = beats[name]
        status = beat.stop()
        if status != 0:
            problems.append(f"{beat.name} did not exit cleanly on SIGTERM: {status}")

    runs = read_runs(cluster.database_url)
    markers = drain(cluster, runs)
    print(f"kills (time, old, new): {kills}; {summary(runs, markers)}")
    problems += takeover_problems(kills, runs, markers)
    problems += delivery_problems(names, first, runs, markers, run_counts(cluster.database_url),
                                  until, MAX_IN_FLIGHT * len(kills), MAX_IN_FLIGHT)
    assert kills, "the leader was never killed"
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(180)
def test_leader_frozen_past_its_lease_sends_nothing_after_it_resumes(make_cluster, admin_for):
    rng = seeded("ha freeze")
    cluster = make_cluster(BROKER, DATABASE, extra_env=HISTORY)
    admin = admin_for(cluster)
    worker = cluster.start_worker()
    old = start_ha_beat(cluster, "freeze-a", LEADER)
    new = start_ha_beat(cluster, "freeze-b", STANDBY)
    names, first, origin = add_tasks(admin, "f")
    old.wait_log(SENDING, 15.0)

    # Freeze the leader at any moment of a second (possibly mid-batch) past its lease.
    watch([worker, old, new], next_burst(origin, time.time() + 3.0, rng.uniform(0.0, 1.0)))
    offset = new.log_size()
    old.sigstop()
    frozen = time.time()
    new.wait_log(LEADER, LEASE + 10.0, since=offset)
    watch([worker, new], frozen + LEASE + 3.0)
    offset = old.log_size()
    resumed = time.time()
    old.sigcont()
    watch([worker, new], resumed + LEASE + 3.0)
    after = old.output_since(offset)
    until = time.time()

    problems: list[str] = []
    sends = after.count(SENDING)
    if sends:
        problems.append(f"the old leader sent {sends} task(s) after it resumed")
    if STANDBY not in after and old.running():
        problems.append(f"the old leader neither logged {STANDBY!r} nor stopped after it "
                        f"resumed")
    owner = lease_owner(cluster.database_url)
    if owner != "freeze-b":
        problems.append(f"the lease is held by {owner!r}, not by the beat that took over")
    for beat in (old, new):
        status = beat.stop()
        if status != 0:
            problems.append(f"{beat.name} did not exit cleanly on SIGTERM: {status}")
    runs = read_runs(cluster.database_url)
    late = [r for r in runs if r.instance_id == "freeze-a"
            and r.created_at.timestamp() >= resumed]
    if late:
        problems.append(f"the old leader recorded {len(late)} run(s) after it resumed: "
                        f"{late[:2]}")
    markers = drain(cluster, runs)
    print(f"frozen {resumed - frozen:.1f}s; {summary(runs, markers)}")
    problems += takeover_problems([(frozen, "freeze-a", "freeze-b")], runs, markers)
    problems += delivery_problems(names, first, runs, markers, run_counts(cluster.database_url),
                                  until, MAX_IN_FLIGHT)
    assert not problems, "\n".join(problems)


WARNING = "another beat instance"


@pytest.mark.timeout(120)
def test_without_ha_a_second_live_beat_is_warned_about_once(make_cluster, admin_for):
    cluster = make_cluster(BROKER, DATABASE)
    admin = admin_for(cluster)
    first = cluster.start_beat(instance_id="solo-a", ha=False)
    add_tasks(admin, "s", count=5)
    first.wait_log(SENDING, 15.0)
    second = cluster.start_beat(instance_id="solo-b", ha=False)

    def warnings(beat: Proc) -> int:
        return beat.output().lower().count(WARNING)

    def warned() -> bool:
        assert first.running() and second.running(), "a beat exited"
        return warnings(second) > 0

    deadline = time.time() + 30.0
    while not warned():
        assert time.time() < deadline, (
            f"the second beat did not warn about {WARNING!r} within 30s (logs below)")
        time.sleep(0.2)
    # Both keep running; neither repeats the warning.
    watch([first, second], time.time() + 10.0)
    assert warnings(second) == 1, f"the second beat warned {warnings(second)} times"
    assert warnings(first) <= 1, f"the first beat warned {warnings(first)} times"
