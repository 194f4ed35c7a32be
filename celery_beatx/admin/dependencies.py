"""Task dependencies in :class:`~celery_beatx.BeatAdmin`: checking the graph, the execution
order of a task's upstream chain, and dropping the edges to removed tasks.

The graph is the tasks' stored ``depends_on`` lists, the field beat gates on.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..errors import DependencyCycle, TaskNotFound
from ._base import AdminBase


class DependenciesMixin(AdminBase):
    """``validate_dependencies`` and ``dependency_chain`` of
    :class:`~celery_beatx.BeatAdmin`."""

    def validate_dependencies(self) -> list[str]:
        """Problems of the dependency graph, one sentence each; an empty list when fine.

        Reports dependencies on tasks that do not exist, ``depends_on`` values that are not
        lists of names (written by hand), and every cycle (one path per strongly connected
        group of tasks).
        """
        with self._tx(readonly=True) as session:
            declared = self.repo.declared_dependencies(session)
        graph, problems = _graph(declared)
        for name in sorted(graph):
            for dep in graph[name]:
                if dep not in graph:
                    problems.append(f"task {name!r} depends on missing task {dep!r}")
        for cycle in cycles(graph):
            problems.append("dependency cycle: " + " -> ".join(cycle))
        return problems

    def dependency_chain(self, name: str) -> list[str]:
        """Every task ``name`` depends on, directly or not, then ``name``: an order in which
        each task comes after all the tasks it depends on (ties in name order).

        :raises TaskNotFound: no such task, or a task of the chain depends on a missing one.
        :raises DependencyCycle: the chain has a cycle (named).
        """
        with self._tx(readonly=True) as session:
            declared = self.repo.declared_dependencies(session)
        if name not in declared:
            raise TaskNotFound(f"task {name!r} does not exist")
        graph, _ = _graph(declared)
        upstream = {name}
        todo = [name]
        while todo:
            node = todo.pop()
            for dep in graph.get(node, ()):
                if dep not in graph:
                    raise TaskNotFound(f"task {node!r} depends on unknown task {dep!r}")
                if dep not in upstream:
                    upstream.add(dep)
                    todo.append(dep)
        sub = {n: [d for d in graph[n] if d in upstream] for n in upstream}
        order = topological_order(sub)
        if order is None:
            cycle = next(iter(cycles(sub)))
            raise DependencyCycle("dependency cycle: " + " -> ".join(cycle))
        return order


def drop_dependencies_on(admin: AdminBase, session: Session, removed: set[str],
                         now: datetime, revision: int) -> list[str]:
    """Before ``removed`` are deleted: take them out of the ``depends_on`` of the tasks that
    stay, each change recorded as a new version of that task.  Returns the tasks changed."""
    edges = [(a, b) for a, b in admin.repo.dependants_of(session, removed) if a not in removed]
    names = sorted({a for a, _ in edges})
    for row in admin.repo.get_tasks(session, names, for_update=True):
        gone = [d for d in row.depends_on if d in removed]
        kept = [d for d in row.depends_on if d not in removed]
        admin._apply(session, row, {"depends_on": kept}, now,
                     comment="dependency on removed task(s) dropped: " + ", ".join(gone),
                     revision=revision)
    return names


def _graph(declared: Mapping[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """``declared`` as a graph (task -> tasks it depends on), and the unusable values."""
    graph: dict[str, list[str]] = {}
    problems: list[str] = []
    for name in sorted(declared):
        deps = declared[name]
        if deps is None:
            deps = []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            problems.append(f"task {name!r} has a depends_on that is not a list of names: "
                            f"{deps!r:.80}")
            deps = []
        graph[name] = list(dict.fromkeys(deps))
    return graph, problems


def topological_order(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Nodes of ``graph`` (node -> nodes it depends on, all in ``graph``) so that each comes
    after those it depends on, ties in name order; ``None`` when there is a cycle."""
    waiting = {n: len(set(deps)) for n, deps in graph.items()}
    dependants: dict[str, list[str]] = {n: [] for n in graph}
    for node, deps in graph.items():
        for dep in set(deps):
            dependants[dep].append(node)
    ready = [n for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for other in dependants[node]:
            waiting[other] -= 1
            if waiting[other] == 0:
                heapq.heappush(ready, other)
    return order if len(order) == len(graph) else None


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected group of
    ``graph``, in name order; edges to nodes outside ``graph`` are ignored."""
    found: list[list[str]] = []
    for group in _strongly_connected(graph):
        start = min(group)
        if len(group) == 1 and start not in graph[start]:
            continue
        found.append(_cycle_through(graph, start, group))
    return sorted(found)


def _strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (a long chain must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter([d for d in graph[root] if d in graph])))
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:  # type: ignore[union-attr]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter([d for d in graph[nxt] if d in graph])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _cycle_through(graph: Mapping[str, Iterable[str]], start: str,
                   group: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself within ``group``."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(d for d in graph[node] if d in group):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError("a strongly connected group has a cycle through each member")
