"""Celery's own beat tests, run against ``celery_beatx.Scheduler``.

At test time the source distribution of the *installed* Celery version is fetched through
the package registry (``pip download --no-binary :all: --no-deps celery==<version>``) into
the pytest cache; nothing of it is copied into this repository. Its
``t/unit/app/test_beat.py`` (with the ``conftest.py`` and package files it needs, and
Celery's own pytest settings from its ``pyproject.toml``) runs in a subprocess with the
plugin :mod:`celery_suite_plugin`, which puts ``celery_beatx.Scheduler`` in the place of
``celery.beat.Scheduler`` before the test module is imported and gives every test a fresh
SQLite database. Every test must pass except those in :data:`EXCLUDED`.

When the registry cannot be reached the test is skipped, except in CI (``CI=true``), where
it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest

import celery_beatx
from dbs import IN_CI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TESTS = Path(__file__).resolve().parent
TEST_MODULE = "t/unit/app/test_beat.py"
#: What the suite needs from the source distribution (paths inside ``celery-<version>/``).
MEMBERS = ("pyproject.toml", "t/__init__.py", "t/unit/__init__.py", "t/unit/conftest.py",
           "t/unit/app/__init__.py", TEST_MODULE)

_HEAP = ("inspects or seeds the stock scheduler's private ``_heap`` (celery-beatx keeps its "
         "own queue of next runs)")

#: Tests not run, each with the reason. A key is ``Class::test`` and covers every
#: parametrisation of that test. Only tests that depend on ``PersistentScheduler``'s shelve
#: or on the private ``_heap`` belong here.
EXCLUDED: dict[str, str] = {
    "test_Scheduler::test_due_tick_returns_delay_when_heap_top_changed":
        _HEAP + ": puts an event on it and mutates it from inside is_due() to simulate a "
        "race in the stock loop",
    "test_Scheduler::test_tick_survives_entry_failing_in_populate_heap":
        _HEAP + ": asserts the time of the broken entry's heap event",
    "test_Scheduler::test_tick_survives_entry_failing_when_due":
        _HEAP + ": seeds it with the broken entry and asserts its rescheduled heap event",
    "test_Scheduler::test_ticks_microseconds":
        _HEAP + ": asserts ``_heap[0].time``",
    "test_Scheduler::test_tick_daily_relative_spring_forward":
        _HEAP + ": measures the next delay as ``_heap[0].time - now``",
    "test_Scheduler::test_ticks_schedule_change":
        _HEAP + ": asserts ``_heap is None`` and ``_heap[0].entry.schedule``",
    "test_Scheduler::test_not_due_top_entry_is_rescheduled_behind_due_entry":
        _HEAP + ": seeds it in a given order and asserts the order after a tick",
    "test_Scheduler::test_reheap_skipped_when_is_due_mutates_heap":
        _HEAP + ": mutates it from inside is_due() and asserts its events",
    "test_Scheduler::test_tick_uses_fresh_time_when_heap_top_changes":
        _HEAP + ": replaces its top event from inside is_due()",
    "test_Scheduler::test_populate_heap":
        _HEAP + ": calls populate_heap() and compares ``_heap`` with an event list",
    "test_Service::test_start":
        "drives a PersistentScheduler over a mock shelve (asserts its entries, closed and "
        "synced flags and ``_store``); PersistentScheduler keeps Celery's own Scheduler as "
        "its base, so its ``isinstance(..., beat.Scheduler)`` is false only because of the "
        "swap",
}


def _fail_or_skip(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("celery-sdist"))
    return tmp_path_factory.getbasetemp() / "celery-sdist"


def celery_sdist(cache: Path, celery_version: str) -> Path:
    """The sdist of ``celery==celery_version``, downloaded once into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"celery-{celery_version}.tar.gz"
    if path.exists():
        return path
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "--disable-pip-version-check", f"celery=={celery_version}", "-d", str(cache)],
            capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        _fail_or_skip(f"pip download celery=={celery_version}: timed out")
    if proc.returncode != 0 or not path.exists():
        _fail_or_skip(f"pip download celery=={celery_version} failed "
                      f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return path


def extract(sdist: Path, celery_version: str, into: Path) -> None:
    """Write :data:`MEMBERS` of the sdist under ``into`` (by exact name, nothing else)."""
    prefix = f"celery-{celery_version}/"
    with tarfile.open(sdist) as tar:
        for member in MEMBERS:
            source = tar.extractfile(prefix + member)
            assert source is not None, f"{member} is not a file in {sdist.name}"
            target = into / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())


def excluded(test_id: str) -> bool:
    return any(test_id == key or test_id.startswith(key + "[") for key in EXCLUDED)


def run_suite(workdir: Path) -> tuple[dict, subprocess.CompletedProcess[str]]:
    report = workdir / "outcomes.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "BEATX_", "CELERY_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        BEATX_SUITE_REPORT=str(report),
        BEATX_SUITE_EXCLUDE=json.dumps(sorted(EXCLUDED)),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", "pyproject.toml", "--rootdir", ".",
         "-p", "celery_suite_plugin", "-p", "no:cacheprovider", "-q", "-rN", TEST_MODULE],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=800)
    if not report.exists():
        pytest.fail(f"the suite wrote no report (exit {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text()), proc


def _why(text: str) -> str:
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    return (lines[0] if lines else text.strip().splitlines()[-1] if text.strip() else "?")[:200]


def test_celerys_beat_tests_pass_against_celery_beatx(request, tmp_path, tmp_path_factory):
    celery_version = installed_version("celery")
    sdist = celery_sdist(_cache_dir(request, tmp_path_factory), celery_version)
    extract(sdist, celery_version, tmp_path)
    report, proc = run_suite(tmp_path)

    ours = celery_beatx.Scheduler
    assert report["scheduler"] == f"{ours.__module__}.{ours.__qualname__}"
    collected = [test_id.split("::", 1)[1] for test_id in report["collected"]]
    assert len(collected) >= 100, proc.stdout[-3000:]
    missing = [key for key in EXCLUDED
               if not any(t == key or t.startswith(key + "[") for t in collected)]
    assert not missing, f"excluded tests that Celery {celery_version} does not have: {missing}"
    outcomes = {test_id.split("::", 1)[1]: result
                for test_id, result in report["tests"].items()}
    assert not any(excluded(test_id) for test_id in outcomes), "an excluded test ran"
    not_run = [t for t in collected if not excluded(t) and t not in outcomes]
    assert not not_run, f"collected but no outcome: {not_run}"
    bad = {test_id: result for test_id, result in outcomes.items()
           if result["outcome"] != "passed"}
    assert not bad, (
        f"{len(bad)} of Celery {celery_version}'s beat tests do not pass against "
        f"celery_beatx.Scheduler:\n" + "\n".join(
            f"  {result['outcome']:<8} {test_id}: {_why(result['text'])}"
            for test_id, result in sorted(bad.items())))
