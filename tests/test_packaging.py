"""The built wheel installs into a fresh venv and migrates an empty database from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_migrations_and_migrates(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, cwd=tmp_path)
    wheel = next(dist.glob("celery_beatx_sql-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "celery_beatx/py.typed" in names
    assert "celery_beatx/migrations/env.py" in names
    assert any(n.startswith("celery_beatx/migrations/versions/0001") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
    # every subpackage of the source tree is in the wheel (setup.cfg lists them by hand)
    for init in (ROOT / "celery_beatx").rglob("__init__.py"):
        module = init.relative_to(ROOT).as_posix()
        assert module in names, f"{module} is missing from the wheel"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # Dependencies come from the same package index pip is configured with here.
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    db = tmp_path / "fresh.sqlite3"
    out = subprocess.run(
        [str(py), "-c",
         "import celery_beatx, sqlalchemy as sa;"
         "from celery_beatx import migrate, BeatAdmin, every;"
         "from celery_beatx.store.engine import make_engine;"
         f"e = make_engine('sqlite:///{db}');"
         "print('rev', migrate.upgrade(e));"
         "print('file', celery_beatx.__file__);"
         "a = BeatAdmin(engine=e); a.add('x', 't', every(seconds=5));"
         "print('tasks', len(a.list()))"],
        check=True, capture_output=True, text=True, cwd=tmp_path)
    from celery_beatx.migrate import head_revision

    assert f"rev {head_revision()}" in out.stdout
    assert str(venv) in out.stdout  # imported from the wheel, not the source tree
    assert "tasks 1" in out.stdout
