"""``make demo``'s script runs the example project end to end and reports what fired."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from harness import AMQP_URL, REPO, check_broker, delete_queue, duplicates

from dbs import fresh_database, unreachable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DEMO = REPO / "example_project" / "run_demo.py"
SECONDS = 8


def run_demo(var: Path, **env: str) -> tuple[int, str, list[list[str]]]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("BROKER_URL", "BEATX_DATABASE_URL", "DEMO_QUEUE")}
    environ.update(DEMO_SECONDS=str(SECONDS), DEMO_VAR_DIR=str(var), **env)
    proc = subprocess.run([sys.executable, str(DEMO)], env=environ, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=SECONDS + 90)
    output = proc.stdout.decode(errors="replace")
    print(output)
    for log in ("beat.log", "worker.log"):
        path = var / log
        if path.exists():
            print(f"===== {log}\n" + "\n".join(path.read_text().splitlines()[-60:]))
    log = var / "fired.log"
    lines = log.read_text().splitlines() if log.exists() else []
    fired = [line.split(" ", 3) for line in lines]
    return proc.returncode, output, fired


def check(status: int, output: str, fired: list[list[str]]) -> None:
    assert status == 0, output
    entries = [f[1] for f in fired]
    # The admin-API task runs every 3 s: it fires at least once within the demo's 8 s.
    assert entries.count("greet-every-3s") >= 1, entries
    assert not duplicates(f[2] for f in fired), "a task id ran twice"
    assert "summary:" in output and "greet-every-3s" in output


def test_demo_without_servers(tmp_path):
    """The default: kombu's sqla+sqlite broker and a SQLite schedule database."""
    status, output, fired = run_demo(tmp_path)
    check(status, output, fired)
    assert "added   greet-every-3s" in output
    assert "sqla+sqlite:///" in output
    assert (tmp_path / "broker.sqlite3").exists() and (tmp_path / "beatx.sqlite3").exists()

    # add_tasks.py is idempotent: run again on the same database it changes nothing.
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "BEATX_DATABASE_URL")}
    again = subprocess.run([sys.executable, str(REPO / "example_project" / "add_tasks.py")],
                           env=dict(env, DEMO_VAR_DIR=str(tmp_path)), cwd=REPO, timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert again.returncode == 0, again.stdout
    assert "exists  greet-every-3s" in again.stdout, again.stdout
    assert "exists  greet-cron-minutely" in again.stdout, again.stdout


def test_demo_on_rabbitmq_and_postgresql(tmp_path):
    error = check_broker(AMQP_URL)
    if error is not None:
        unreachable("rabbitmq", error)
    queue = f"beatx-demo-{uuid.uuid4().hex[:12]}"
    with fresh_database("postgresql", str(tmp_path)) as url:
        try:
            status, output, fired = run_demo(tmp_path, BROKER_URL=AMQP_URL,
                                             BEATX_DATABASE_URL=url, DEMO_QUEUE=queue)
        finally:
            delete_queue(AMQP_URL, queue)
    check(status, output, fired)
    assert "amqp://" in output and "postgresql+psycopg://" in output
    assert not (tmp_path / "broker.sqlite3").exists()
