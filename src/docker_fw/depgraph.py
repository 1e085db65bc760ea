"""Dependency scheduling over plain node names, like docker-compose v1's.

Pure and generic: nodes are any hashable values (container names in
docker-fw, plain strings in the tests) and ``deps`` says what a node needs
to be started first, either as a mapping (nodes missing from it have no
dependencies) or as a callable.  "``a`` depends on ``b``" means ``b`` must
be done before ``a`` starts; a cycle is written in that direction:
``a -> b -> a``.

Dependencies are looked up once per node and cached, so a callable ``deps``
may be costly (an engine query); duplicate dependencies are ignored.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Union

if TYPE_CHECKING:
    from concurrent.futures import Future

N = TypeVar("N", bound=Hashable)
R = TypeVar("R")

Deps = Union[Mapping[Any, Iterable[Any]], Callable[[Any], Iterable[Any]]]


class DependencyCycleError(ValueError):
    """The dependencies loop; ``.cycle`` lists it, first node repeated last."""

    def __init__(self, cycle: list[Any]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(map(str, cycle)))


class MissingDependencyError(ValueError):
    """A selected node needs one that is not selected (and not pulled in)."""

    def __init__(self, node: Any, dependency: Any) -> None:
        self.node = node
        self.dependency = dependency
        super().__init__(f"{node} depends on {dependency}, which is not selected (use --pull-deps)")


class NodeFailed(Exception):
    """``func(node)`` raised in ``run_parallel``; the error is ``__cause__``.

    ``results`` holds what the nodes that did succeed returned, so that a
    caller can report (or undo) the work that was done before the failure.
    """

    def __init__(self, node: Any, results: dict[Any, Any]) -> None:
        self.node = node
        self.results = results
        super().__init__(f"{node} failed")


def _lookup(deps: Deps) -> Callable[[Any], list[Any]]:
    """One interface for both spellings of ``deps``, deduplicated, in order."""
    get: Callable[[Any], Iterable[Any]]
    if isinstance(deps, Mapping):
        mapping = deps
        get = lambda n: mapping.get(n, ())  # noqa: E731
    else:
        get = deps
    return lambda n: list(dict.fromkeys(get(n)))


def _unique(nodes: Iterable[N]) -> list[N]:
    return list(dict.fromkeys(nodes))


def closure(selected: Iterable[N], deps: Deps) -> set[N]:
    """``selected`` plus everything reachable through ``deps`` (``--pull-deps``)."""
    get = _lookup(deps)
    seen: set[N] = set()
    stack = _unique(selected)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(d for d in get(node) if d not in seen)
    return seen


def _graph(selected: Iterable[N], deps: Deps, pull_deps: bool) -> tuple[list[N], dict[N, list[N]]]:
    """The nodes in tie-break order and each node's dependencies among them.

    Given nodes keep the order they were given in; nodes pulled in by
    ``pull_deps`` follow, sorted by name (``str``) so the result does not
    depend on set iteration order.
    """
    get = _lookup(deps)
    nodes = _unique(selected)
    if pull_deps:
        given = set(nodes)
        nodes += sorted((n for n in closure(nodes, get) if n not in given), key=str)
    members = set(nodes)
    graph = {n: get(n) for n in nodes}
    for node in nodes:
        for dep in graph[node]:
            if dep not in members:
                raise MissingDependencyError(node, dep)
    return nodes, graph


def _find_cycle(stuck: list[N], graph: dict[N, list[N]], rank: dict[N, int]) -> list[N]:
    """One cycle among ``stuck``: nodes a topological sort could not release.

    Every stuck node has a stuck dependency (else it would have been
    released), so walking from one of them must come back to a node already
    on the path.  The cycle is rotated to start at its earliest-given node,
    which makes the message stable.
    """
    left = set(stuck)
    path: list[N] = []
    on_path: dict[N, int] = {}
    node = stuck[0]
    while node not in on_path:
        on_path[node] = len(path)
        path.append(node)
        node = min((d for d in graph[node] if d in left), key=rank.__getitem__)
    cycle = path[on_path[node]:]
    first = min(range(len(cycle)), key=lambda i: rank[cycle[i]])
    cycle = cycle[first:] + cycle[:first]
    return cycle + [cycle[0]]


def _dependants(nodes: list[N], graph: dict[N, list[N]]) -> tuple[dict[N, int], dict[N, list[N]]]:
    """How many dependencies each node waits for, and who waits for each node."""
    waiting = {n: len(graph[n]) for n in nodes}
    dependants: dict[N, list[N]] = {n: [] for n in nodes}
    for node in nodes:
        for dep in graph[node]:
            dependants[dep].append(node)
    return waiting, dependants


def _toposort(nodes: list[N], graph: dict[N, list[N]]) -> list[N]:
    """Kahn's algorithm; among ready nodes the earliest in ``nodes`` goes first."""
    rank = {n: i for i, n in enumerate(nodes)}
    waiting, dependants = _dependants(nodes, graph)
    ready = [rank[n] for n in nodes if waiting[n] == 0]
    heapq.heapify(ready)  # ranks are unique ints: nodes themselves are never compared
    order: list[N] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for dependant in dependants[node]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, rank[dependant])
    if len(order) < len(nodes):
        done = set(order)
        raise DependencyCycleError(_find_cycle([n for n in nodes if n not in done], graph, rank))
    return order


def start_order(selected: Iterable[N], deps: Deps, *, pull_deps: bool = False) -> list[N]:
    """The selected nodes, dependencies first.

    Deterministic: ties go to the order the nodes were given in, then (for
    nodes pulled in by ``pull_deps``) to their names.  Raises
    ``MissingDependencyError`` when a node depends on one outside the
    selection and ``pull_deps`` is false, ``DependencyCycleError`` naming one
    cycle when there is one.
    """
    nodes, graph = _graph(selected, deps, pull_deps)
    return _toposort(nodes, graph)


def _within(nodes: list[N], deps: Deps) -> dict[N, list[N]]:
    """Dependencies restricted to ``nodes``: the others count as done.

    ``levels`` and ``run_parallel`` schedule a selection the caller already
    validated (``start_order``); a dependency left out of it on purpose is
    assumed to be running already, as docker-compose does.
    """
    get = _lookup(deps)
    members = set(nodes)
    return {n: [d for d in get(n) if d in members] for n in nodes}


def levels(order_or_nodes: Iterable[N], deps: Deps) -> list[list[N]]:
    """Groups that can run concurrently, in ``start_order`` order.

    Level k holds the nodes whose dependencies are all in levels < k (and at
    least one in level k-1).  Dependencies outside the given nodes are
    ignored; a cycle raises ``DependencyCycleError``.
    """
    nodes = _unique(order_or_nodes)
    graph = _within(nodes, deps)
    level: dict[N, int] = {}
    for node in _toposort(nodes, graph):
        level[node] = 1 + max((level[d] for d in graph[node]), default=-1)
    groups: list[list[N]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for node, k in level.items():
        groups[k].append(node)
    return groups


def run_parallel(nodes: Iterable[N], deps: Deps, func: Callable[[N], R], max_workers: int = 4) -> dict[N, R]:
    """Run ``func(node)`` for every node as soon as its dependencies succeeded.

    Returns ``{node: func(node)}``.  Dependencies outside ``nodes`` count as
    done; a cycle raises ``DependencyCycleError`` before anything runs.

    Fail fast: after the first failure nothing new is started (its
    dependants must not run, and the caller gets an exception rather than
    the results, so further independent work would go unreported); the
    calls already running are waited for, then ``NodeFailed`` is raised with
    the failing node, the original exception as ``__cause__`` and the
    results so far.
    """
    # Imported here: concurrent.futures (and the logging it loads) is only for 'start --jobs'.
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, not {max_workers}")
    given = _unique(nodes)
    graph = _within(given, deps)
    order = _toposort(given, graph)  # also rejects cycles up front
    rank = {n: i for i, n in enumerate(order)}
    waiting, dependants = _dependants(order, graph)

    results: dict[N, R] = {}
    failed: tuple[N, BaseException] | None = None
    # Our own ready queue, fed to the pool only as workers free up: queued
    # work could not be held back after a failure, and the earliest-ranked
    # ready node should be the next one to start.
    ready = [rank[n] for n in order if waiting[n] == 0]
    heapq.heapify(ready)
    running: dict[Future[R], N] = {}
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="depgraph") as pool:
        while True:
            while ready and failed is None and len(running) < max_workers:
                node = order[heapq.heappop(ready)]
                running[pool.submit(func, node)] = node
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: rank[running[f]]):
                node = running.pop(future)
                error = future.exception()
                if error is not None:
                    failed = failed or (node, error)
                    continue
                results[node] = future.result()
                for dependant in dependants[node]:
                    waiting[dependant] -= 1
                    if waiting[dependant] == 0:
                        heapq.heappush(ready, rank[dependant])
    if failed is not None:
        node, error = failed
        raise NodeFailed(node, results) from error
    return results
