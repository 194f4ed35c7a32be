"""The README's command-line walk-through, run as written while the demo runs."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.rst"
MARKER = "(``tests/test_cli_walkthrough.py`` runs exactly these lines)::"


def walkthrough() -> list[str]:
    """The shell lines of the README's walk-through block."""
    text = README.read_text()
    block = text[text.index(MARKER) + len(MARKER):].lstrip("\n")
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        if line.strip():
            lines.append(line.strip())
    return lines


def wait_until(check, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what} within {seconds} s")


def test_readme_walkthrough_against_the_running_demo(tmp_path):
    lines = walkthrough()
    assert lines[0] == "cd example_project" and len(lines) == 6
    env = {k: v for k, v in os.environ.items()
           if k not in ("BROKER_URL", "BEATX_DATABASE_URL", "BEATX_ADMIN_URL", "DEMO_QUEUE")}
    env.update(DEMO_SECONDS="60", DEMO_VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    demo = subprocess.Popen([sys.executable, str(REPO / "example_project" / "run_demo.py")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    fired = tmp_path / "fired.log"
    try:
        wait_until(lambda: fired.exists() and "greet-every-3s" in fired.read_text(), 60,
                   "the demo's worker ran nothing")
        cwd = REPO
        results = {}
        for line in lines:
            words = shlex.split(line)
            if words[0] == "cd":
                cwd = cwd / words[1]
                continue
            assert words[:4] == ["celery", "-A", "demo_app", "beatx"], line
            proc = subprocess.run([sys.executable, "-m", *words], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=60)
            results[words[4]] = proc
            assert proc.returncode == 0, (line, proc.stdout, proc.stderr)

        listed = results["list"].stdout
        for name in ("greet-every-3s", "greet-cron-minutely", "heartbeat", "minute-report"):
            assert re.search(rf"^{name}\s", listed, re.M), listed
        assert f"sqlite:///{tmp_path}/beatx.sqlite3" in listed.splitlines()[0]
        # the first may be due within the second ("now"), the others are ahead
        assert len(re.findall(r"\((?:now|in \d)", results["next"].stdout)) == 3, \
            results["next"].stdout
        assert results["disable"].stdout.strip() == "disabled greet-every-3s"
        task_id = re.search(r"task id (\S+)\)", results["run-now"].stdout).group(1)
        assert results["health"].stdout.startswith("healthy")
        # The run queued by hand is sent by beat and run by the worker, though disabled.
        wait_until(lambda: task_id in fired.read_text(), 30,
                   f"the run-now run {task_id} did not run")
    finally:
        demo.send_signal(signal.SIGINT)  # the demo stops beat and worker on Ctrl-C
        try:
            output, _ = demo.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            demo.kill()
            output, _ = demo.communicate()
        print(output)
