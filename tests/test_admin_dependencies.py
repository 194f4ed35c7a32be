"""validate_dependencies, dependency_chain and remove(force=True), on real SQLite,
PostgreSQL and MariaDB; the graph functions as plain functions."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from test_admin import snapshot

from celery_beatx import DependencyCycle, InvalidSchedule, TaskNotFound, every
from celery_beatx.admin.dependencies import cycles, topological_order
from celery_beatx.store.models import Task


def pipeline(admin) -> None:  # type: ignore[no-untyped-def]
    """extract -> (clean, enrich) -> load, and an unrelated task."""
    admin.add("extract", "etl.extract", every(minutes=10))
    admin.add("enrich", "etl.enrich", every(minutes=10), depends_on=["extract"])
    admin.add("clean", "etl.clean", every(minutes=10), depends_on=["extract"])
    admin.add("load", "etl.load", every(minutes=10), depends_on=["enrich", "clean"])
    admin.add("other", "etl.other", every(minutes=10))


def set_depends_on(admin, name: str, deps) -> None:  # type: ignore[no-untyped-def]
    """Write ``depends_on`` the way a hand edit of the database would (no checks)."""
    with admin.engine.begin() as conn:
        conn.execute(sa.update(Task).where(Task.name == name).values(depends_on=deps))


def test_a_sound_graph_has_no_problems_and_chains_in_execution_order(admin):
    pipeline(admin)
    assert admin.validate_dependencies() == []
    assert admin.dependency_chain("load") == ["extract", "clean", "enrich", "load"]
    assert admin.dependency_chain("enrich") == ["extract", "enrich"]
    assert admin.dependency_chain("other") == ["other"]
    with pytest.raises(TaskNotFound):
        admin.dependency_chain("missing")


def test_problems_written_behind_the_api_are_reported(admin):
    pipeline(admin)
    set_depends_on(admin, "extract", ["load"])  # a cycle through the whole pipeline
    set_depends_on(admin, "other", ["ghost"])
    admin.add("odd", "etl.odd", every(minutes=1))
    set_depends_on(admin, "odd", "extract")  # not a list
    problems = admin.validate_dependencies()
    assert problems == [
        "task 'odd' has a depends_on that is not a list of names: 'extract'",
        "task 'other' depends on missing task 'ghost'",
        "dependency cycle: clean -> extract -> load -> clean",
    ]
    with pytest.raises(DependencyCycle, match="dependency cycle: clean -> extract"):
        admin.dependency_chain("load")
    with pytest.raises(TaskNotFound, match="'other' depends on unknown task 'ghost'"):
        admin.dependency_chain("other")


def test_removing_a_task_others_depend_on_needs_force(admin):
    pipeline(admin)
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule, match="force=True") as err:
        admin.remove("extract")
    assert err.value.field == "depends_on"
    assert snapshot(admin) == before
    revisions = {t.name: t.revision for t in admin.list()}

    admin.remove("extract", force=True)
    assert [t.name for t in admin.list()] == ["clean", "enrich", "load", "other"]
    for name in ("clean", "enrich"):
        info = admin.get(name)
        assert info.depends_on == [] and info.version == 2
        assert info.revision > revisions[name]  # running beats pick the change up
        assert admin.versions(name)[-1].comment == \
            "dependency on removed task(s) dropped: extract"
    assert admin.get("load").version == 1
    assert admin.validate_dependencies() == []
    with admin.engine.connect() as conn:
        edges = conn.execute(sa.text(
            "SELECT task_name, depends_on FROM beatx_dependencies ORDER BY task_name, "
            "depends_on")).all()
    assert [tuple(e) for e in edges] == [("load", "clean"), ("load", "enrich")]


def test_remove_many_with_force_keeps_the_other_dependencies(admin):
    pipeline(admin)
    admin.remove_many(["clean", "enrich"], force=True)
    assert admin.get("load").depends_on == []
    admin.add("x", "etl.x", every(minutes=1), depends_on=["extract", "load"])
    admin.remove_many(["load"], force=True)
    assert admin.get("x").depends_on == ["extract"]
    assert admin.dependency_chain("x") == ["extract", "x"]


@pytest.mark.parametrize("force", ["yes", 1, None])
def test_force_must_be_a_boolean(admin, force):
    admin.add("a", "t", every(minutes=1))
    with pytest.raises(InvalidSchedule) as err:
        admin.remove("a", force=force)
    assert err.value.field == "force"
    assert [t.name for t in admin.list()] == ["a"]


# -- the graph functions -------------------------------------------------------------------

def test_topological_order_breaks_ties_by_name():
    graph = {"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": [], "z": []}
    assert topological_order(graph) == ["a", "b", "c", "d", "z"]
    assert topological_order({"a": ["b"], "b": ["a"]}) is None


def test_cycles_one_per_strongly_connected_group():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"], "e": ["a", "f"], "f": ["e"],
             "g": []}
    assert cycles(graph) == [["a", "b", "c", "a"], ["d", "d"], ["e", "f", "e"]]


def test_a_long_chain_does_not_hit_the_recursion_limit():
    n = 5000
    graph = {f"t{i:05d}": ([f"t{i - 1:05d}"] if i else []) for i in range(n)}
    assert cycles(graph) == []
    assert topological_order(graph) == sorted(graph)
    graph["t00000"] = [f"t{n - 1:05d}"]
    assert len(cycles(graph)[0]) == n + 1
