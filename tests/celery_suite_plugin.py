"""pytest plugin that runs Celery's own beat tests against ``celery_beatx.Scheduler``.

Loaded with ``-p celery_suite_plugin`` by ``tests/test_celery_beat_suite.py`` (in a
subprocess, on the test files of Celery's source distribution). Importing it replaces
``celery.beat.Scheduler`` with ``celery_beatx.Scheduler`` before pytest imports the test
module, so every ``beat.Scheduler(...)`` the tests build, and every subclass they define, is
ours. ``celery_beatx.Scheduler`` itself was defined on Celery's original class, and
``PersistentScheduler`` keeps Celery's original base too.

Each test gets its own empty SQLite database through ``BEATX_DATABASE_URL``. Tests named
in ``BEATX_SUITE_EXCLUDE`` (a JSON list of ``Class::test``, each covering its
parametrisations) are deselected. Every collected test id and the outcome of every test that
ran are written as JSON to the file named by ``BEATX_SUITE_REPORT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from celery import beat

import celery_beatx

beat.Scheduler = celery_beatx.Scheduler  # type: ignore[misc]

_OUTCOMES: dict[str, dict[str, Any]] = {}
_COLLECTED: list[str] = []


def _excluded(nodeid: str, keys: list[str]) -> bool:
    test_id = nodeid.split("::", 1)[-1]
    return any(test_id == key or test_id.startswith(key + "[") for key in keys)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember every collected test, then deselect the excluded ones."""
    _COLLECTED.extend(item.nodeid for item in items)
    keys = json.loads(os.environ.get("BEATX_SUITE_EXCLUDE", "[]"))
    dropped = [item for item in items if _excluded(item.nodeid, keys)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _excluded(item.nodeid, keys)]


@pytest.fixture(autouse=True)
def _beatx_fresh_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEATX_DATABASE_URL", f"sqlite:///{tmp_path / 'beatx.sqlite3'}")


#: The change-poll interval the suite runs with (the default is 1 s). Several of Celery's
#: tests compare what ``tick()`` returns with ``max_interval`` (which celery-beatx caps at
#: the sync interval). A change poll due sooner than 70 % of ``max_interval`` rightly cuts
#: that sleep short, so with 1 s a first tick slowed past 0.3 s by a loaded machine returned
#: the time to the poll instead (seen in CI: 0.69 for ``test_schedule_no_remain``; under six
#: busy loops, 0.62 for ``test_honors_max_interval``). At 5 s
#: the first tick would have to take 1.5 s.
SUITE_SYNC_INTERVAL = 5.0


@pytest.fixture(autouse=True)
def _beatx_suite_sync_interval(celery_app: Any) -> None:
    celery_app.conf.beatx_sync_interval = SUITE_SYNC_INTERVAL


def _record(nodeid: str, outcome: str, when: str, text: str) -> None:
    previous = _OUTCOMES.get(nodeid)
    # The first phase that did not pass decides (a teardown error after a failure adds
    # nothing); a passed call is still spoiled by a teardown error.
    if previous is not None and previous["outcome"] != "passed":
        return
    _OUTCOMES[nodeid] = {"outcome": outcome, "when": when, "text": text[-3000:]}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each test's outcome: ``passed``, ``failed``, ``error`` or ``skipped``."""
    if report.when != "call" and report.outcome == "passed":
        return
    outcome = report.outcome
    if outcome == "failed" and report.when != "call":
        outcome = "error"
    _record(report.nodeid, outcome, report.when, report.longreprtext or "")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _record(report.nodeid or "<collection>", "collect-error", "collect",
                report.longreprtext or "")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("BEATX_SUITE_REPORT")
    if not path:
        return
    scheduler = beat.Scheduler
    Path(path).write_text(json.dumps({
        "scheduler": f"{scheduler.__module__}.{scheduler.__qualname__}",
        "collected": _COLLECTED,
        "tests": _OUTCOMES,
    }, indent=1))
