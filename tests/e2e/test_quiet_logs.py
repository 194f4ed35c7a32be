"""Beat's log says each thing once (issue 9, item 6).

Beat started while its database (a private PostgreSQL) is down waits, logging that once,
and comes up when the database returns 20 s later; the whole log has a few lines for the
outage and no traceback repeats.  The same for a database outage while beat runs.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OUTAGE = 20.0


def traceback_blocks(log: str) -> list[str]:
    """Each traceback in the log, as text."""
    blocks = re.split(r"(?m)^(?=Traceback \(most recent call last\):)", log)
    return [b.split("\n\n")[0] for b in blocks[1:]]


def outage_lines(log: str) -> list[str]:
    words = ("unreachable", "reachable again", "still", "Traceback", "Error", "error")
    return [line for line in log.splitlines() if any(w in line for w in words)]


def test_beat_started_with_the_database_down_waits_and_logs_it_once(make_cluster,
                                                                   private_postgres):
    cluster = make_cluster("redis", private_postgres, schedule={"tick": {"every": 2}})
    private_postgres.stop()
    beat = cluster.start_beat(wait=False)
    time.sleep(OUTAGE)
    assert beat.running(), beat.output()
    private_postgres.start()
    beat.wait_log("beat: loaded", 30)
    time.sleep(3)
    assert beat.stop() == 0
    log = beat.output()
    lines = outage_lines(log)
    print("\n".join(lines))
    assert len(lines) <= 6, f"{len(lines)} outage lines:\n" + "\n".join(lines)
    assert sum("unreachable" in line for line in lines) == 1, lines
    assert sum("reachable again" in line for line in lines) == 1, lines
    repeated = [b for b, n in Counter(traceback_blocks(log)).items() if n > 1]
    assert not repeated, repeated[0]
    assert "shut down cleanly" in log


def test_a_database_outage_while_running_logs_one_line_each_way(make_cluster,
                                                               private_postgres):
    cluster = make_cluster("redis", private_postgres, schedule={"tick": {"every": 1}})
    beat = cluster.start_beat()
    time.sleep(2)
    offset = beat.log_size()
    private_postgres.stop()
    time.sleep(15)
    private_postgres.start()
    wait_for(lambda: "reachable again" in beat.output_since(offset), 30, "recovery")
    time.sleep(2)
    assert beat.stop() == 0
    log = beat.output_since(offset)
    lines = outage_lines(log)
    print("\n".join(lines))
    assert len(lines) <= 6, f"{len(lines)} outage lines:\n" + "\n".join(lines)
    repeated = [b for b, n in Counter(traceback_blocks(log)).items() if n > 1]
    assert not repeated, repeated[0]
