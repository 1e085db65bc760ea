"""depgraph: order, levels and parallel runs over plain string nodes."""

from __future__ import annotations

import threading

import pytest

from docker_fw.depgraph import (
    DependencyCycleError,
    MissingDependencyError,
    NodeFailed,
    closure,
    levels,
    run_parallel,
    start_order,
)

CHAIN = {"app": ["db"], "db": ["volume"]}
DIAMOND = {"top": ["left", "right"], "left": ["base"], "right": ["base"]}
TIMEOUT = 10  # seconds; only reached when the code under test is wrong


def assert_deps_first(order, deps):
    position = {n: i for i, n in enumerate(order)}
    for node, needs in deps.items():
        for dep in needs:
            if node in position and dep in position:
                assert position[dep] < position[node], f"{dep} must come before {node}"


# --- closure ------------------------------------------------------------------


def test_closure_follows_dependencies_transitively():
    assert closure(["app"], CHAIN) == {"app", "db", "volume"}
    assert closure(["top"], DIAMOND) == {"top", "left", "right", "base"}


def test_closure_accepts_a_callable_and_terminates_on_cycles():
    assert closure(["a"], lambda n: {"a": ["b"], "b": ["a"]}[n]) == {"a", "b"}


def test_closure_of_nothing_is_empty():
    assert closure([], CHAIN) == set()


# --- start_order --------------------------------------------------------------


def test_chain_dependencies_first():
    assert start_order(["app", "db", "volume"], CHAIN) == ["volume", "db", "app"]


def test_diamond_base_first_top_last():
    order = start_order(["top", "left", "right", "base"], DIAMOND)
    assert order == ["base", "left", "right", "top"]
    assert_deps_first(order, DIAMOND)


def test_independent_nodes_keep_the_given_order():
    assert start_order(["c", "a", "b"], {}) == ["c", "a", "b"]
    assert start_order(["b", "c", "a"], {}) == ["b", "c", "a"]


def test_independent_branches_interleave_by_given_order():
    deps = {"web": ["api"], "api": ["db"], "worker": ["queue"]}
    order = start_order(["web", "worker", "api", "queue", "db"], deps)
    assert_deps_first(order, deps)
    # ready first: queue (rank 3) and db (rank 4); queue wins the tie, which
    # releases worker (rank 1), which beats db.
    assert order == ["queue", "worker", "db", "api", "web"]


def test_order_is_deterministic_and_duplicates_are_ignored():
    deps = {"x": ["z", "y", "z"], "y": [], "z": []}
    first = start_order(["x", "y", "z", "y"], deps)
    assert first == ["y", "z", "x"]
    assert all(start_order(["x", "y", "z"], deps) == first for _ in range(20))


def test_callable_deps_are_looked_up_once_per_node():
    calls = []

    def deps(node):
        calls.append(node)
        return CHAIN.get(node, [])

    assert start_order(["app", "db", "volume"], deps) == ["volume", "db", "app"]
    assert sorted(calls) == ["app", "db", "volume"]


def test_missing_dependency_names_who_needs_what():
    with pytest.raises(MissingDependencyError) as info:
        start_order(["app", "db"], CHAIN)
    assert str(info.value) == "db depends on volume, which is not selected (use --pull-deps)"
    assert (info.value.node, info.value.dependency) == ("db", "volume")
    assert isinstance(info.value, ValueError)


def test_pull_deps_brings_dependencies_in_sorted_by_name():
    assert start_order(["app"], CHAIN, pull_deps=True) == ["volume", "db", "app"]
    deps = {"app": ["zeta", "alpha", "mid"]}
    assert start_order(["app"], deps, pull_deps=True) == ["alpha", "mid", "zeta", "app"]


def test_pull_deps_keeps_given_nodes_ahead_of_pulled_ones_on_ties():
    deps = {"app": ["b_dep"], "other": []}
    assert start_order(["app", "other"], deps, pull_deps=True) == ["other", "b_dep", "app"]


def test_self_loop_is_a_cycle():
    with pytest.raises(DependencyCycleError) as info:
        start_order(["a"], {"a": ["a"]})
    assert str(info.value) == "dependency cycle: a -> a"
    assert info.value.cycle == ["a", "a"]


def test_three_cycle_is_named_in_dependency_order():
    deps = {"a": ["b"], "b": ["c"], "c": ["a"]}
    with pytest.raises(DependencyCycleError, match=r"^dependency cycle: a -> b -> c -> a$"):
        start_order(["a", "b", "c"], deps)
    # rotated to start at the earliest-given node of the cycle
    with pytest.raises(DependencyCycleError, match=r"^dependency cycle: c -> a -> b -> c$"):
        start_order(["c", "b", "a"], deps)


def test_cycle_reached_through_other_nodes_names_only_the_cycle():
    deps = {"app": ["x"], "x": ["y"], "y": ["x"], "free": []}
    with pytest.raises(DependencyCycleError, match=r"^dependency cycle: x -> y -> x$"):
        start_order(["app", "free", "x", "y"], deps)


def test_cycle_found_when_pulled_in():
    with pytest.raises(DependencyCycleError, match="a -> b -> a"):
        start_order(["a"], {"a": ["b"], "b": ["a"]}, pull_deps=True)


# --- levels -------------------------------------------------------------------


def test_levels_of_a_diamond():
    assert levels(["top", "left", "right", "base"], DIAMOND) == [["base"], ["left", "right"], ["top"]]


def test_levels_of_independent_branches():
    deps = {"web": ["api"], "api": ["db"], "worker": ["queue"]}
    assert levels(["web", "api", "db", "worker", "queue"], deps) == [["db", "queue"], ["api", "worker"], ["web"]]


def test_levels_ignore_dependencies_outside_the_nodes():
    assert levels(["app", "db"], CHAIN) == [["db"], ["app"]]


def test_levels_of_nothing_and_of_a_cycle():
    assert levels([], {}) == []
    with pytest.raises(DependencyCycleError):
        levels(["a", "b"], {"a": ["b"], "b": ["a"]})


# --- run_parallel ---------------------------------------------------------------


class Recorder:
    """Thread-safe log of ("start"|"finish", node) events."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def log(self, what, node):
        with self.lock:
            self.events.append((what, node))

    def index(self, what, node):
        return self.events.index((what, node))

    def started(self):
        return {n for what, n in self.events if what == "start"}


def test_run_parallel_returns_every_result():
    assert run_parallel(["a", "b", "c"], {"c": ["a"]}, str.upper) == {"a": "A", "b": "B", "c": "C"}


def test_run_parallel_of_nothing():
    assert run_parallel([], {}, str.upper) == {}


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_run_parallel_finishes_dependencies_before_dependants_start(workers):
    deps = {"top": ["left", "right"], "left": ["base"], "right": ["base"], "web": ["api"], "api": ["base"]}
    rec = Recorder()

    def work(node):
        rec.log("start", node)
        rec.log("finish", node)
        return node

    result = run_parallel(["top", "left", "right", "base", "web", "api", "solo"], deps, work, max_workers=workers)
    assert set(result) == {"top", "left", "right", "base", "web", "api", "solo"}
    for node, needs in deps.items():
        for dep in needs:
            assert rec.index("finish", dep) < rec.index("start", node), f"{node} started before {dep} finished"


def test_run_parallel_with_one_worker_follows_start_order():
    deps = {"web": ["api"], "api": ["db"], "worker": ["queue"]}
    nodes = ["web", "worker", "api", "queue", "db"]
    calls = []
    run_parallel(nodes, deps, calls.append, max_workers=1)
    assert calls == start_order(nodes, deps)


def test_run_parallel_runs_independent_nodes_at_the_same_time():
    # Both calls wait at the barrier: it only opens if they run concurrently,
    # otherwise it times out, breaks, and the run fails.
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    deps = {"after": ["left", "right"]}

    def work(node):
        if node != "after":
            barrier.wait()
        return node

    assert run_parallel(["after", "left", "right"], deps, work, max_workers=2) == {
        "after": "after",
        "left": "left",
        "right": "right",
    }


def test_run_parallel_does_not_run_dependants_of_a_failure():
    rec = Recorder()
    boom = RuntimeError("boom")

    def work(node):
        rec.log("start", node)
        if node == "db":
            raise boom
        return node

    deps = {"app": ["db"], "web": ["app"]}
    with pytest.raises(NodeFailed) as info:
        run_parallel(["web", "app", "db"], deps, work)
    assert info.value.node == "db"
    assert info.value.__cause__ is boom
    assert rec.started() == {"db"}
    assert info.value.results == {}


def test_run_parallel_waits_for_running_calls_before_raising():
    # "slow" is running when "bad" fails: run_parallel must let it finish
    # (and report its result) before raising.
    slow_started = threading.Event()
    bad_failed = threading.Event()
    rec = Recorder()

    def work(node):
        rec.log("start", node)
        if node == "bad":
            assert slow_started.wait(TIMEOUT)
            bad_failed.set()
            raise KeyError(node)
        slow_started.set()
        assert bad_failed.wait(TIMEOUT)
        rec.log("finish", node)
        return node

    with pytest.raises(NodeFailed) as info:
        run_parallel(["bad", "slow", "after_bad"], {"after_bad": ["bad"]}, work, max_workers=2)
    assert info.value.node == "bad"
    assert isinstance(info.value.__cause__, KeyError)
    assert ("finish", "slow") in rec.events
    assert info.value.results == {"slow": "slow"}
    assert "after_bad" not in rec.started()


def test_run_parallel_starts_nothing_new_after_a_failure():
    rec = Recorder()

    def work(node):
        rec.log("start", node)
        if node == "first":
            raise ValueError("nope")
        return node

    # one worker: "first" runs alone and fails; "second" is independent but
    # was never started, and stays so.
    with pytest.raises(NodeFailed, match="first failed"):
        run_parallel(["first", "second"], {}, work, max_workers=1)
    assert rec.started() == {"first"}


def test_run_parallel_ignores_dependencies_outside_the_nodes():
    assert run_parallel(["app"], CHAIN, str.upper) == {"app": "APP"}


def test_run_parallel_rejects_cycles_before_running_anything():
    rec = Recorder()
    with pytest.raises(DependencyCycleError):
        run_parallel(["ok", "a", "b"], {"a": ["b"], "b": ["a"]}, lambda n: rec.log("start", n))
    assert rec.events == []


def test_run_parallel_needs_a_worker():
    with pytest.raises(ValueError, match="max_workers"):
        run_parallel(["a"], {}, str.upper, max_workers=0)
