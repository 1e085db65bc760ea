"""End-to-end fixtures: a sandbox Docker engine (tests.harness.sandbox) per engine version.

The ``sandbox`` fixture is parametrised over the engines in ENGINES: the system's
20.10 (iptables layout with DOCKER-ISOLATION chains), a 28.x unpacked by
scripts/get-engine-28.sh (DOCKER-FORWARD / DOCKER-BRIDGE layout) and Docker 29
from its static tarball (tests/harness/engines.py; iptables backend, 28.x's
layout).  Every end-to-end test that uses it runs on 20.10 and 28.x; on 29 only
the tests ON_DOCKER29 names (see there why); pytest groups the tests by engine,
so one engine runs at a time.  A module that is about some engines only narrows
it with ``only_on("28")``.  DFW_E2E_ENGINES=20.10 (comma-separated) runs a
subset; the others skip.

Prerequisites (root, dockerd, docker, iptables, static busybox, nsenter, ip, the
unpacked 28.x engine and its client, Docker 29's tarball) that are missing skip
the end-to-end tests, except under CI=true, where they fail instead.  Every test
collected from this directory is marked ``e2e``.

Docker 29 in nftables mode (not in ENGINES: the ``sandbox`` tests are about
iptables; test_nftables_e2e.py proves the nftables backend on sandboxes of its
own): ``start_sandbox("29", name=..., extra_daemon_args=[*NFTABLES_ARGS, ...])``,
or the ``sandbox29_nftables`` fixture; the sandbox then turns forwarding on
before dockerd starts, and ``nft`` must be installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parent.parent
if str(_REPO) not in sys.path:  # `tests.harness` when pytest runs without `python -m`
    sys.path.insert(0, str(_REPO))

from tests.harness.engines import engine28, engine29  # noqa: E402
from tests.harness.image import is_static  # noqa: E402
from tests.harness.sandbox import Sandbox, _env  # noqa: E402

# Another name lets two test runs (two checkouts) share a machine without
# tearing down each other's sandbox.  The 28.x sandbox gets a "28" suffix, and
# each pytest-xdist worker its own ("-gw1"), so that no distribution mode lets
# two workers start (and so tear down) the same sandbox.
SANDBOX_NAME = os.environ.get("DFW_SANDBOX_NAME", "dfw-e2e")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

SYSTEM_ENGINE = "20.10"  # Debian bookworm's docker.io, the installed dockerd
ENGINES = (SYSTEM_ENGINE, "28", "29")
_UNPACKED = {"28": engine28, "29": engine29}  # how each other engine is found
_MAJORS = {SYSTEM_ENGINE: (20,), "28": (28, 29), "29": (29,)}  # sid's docker.io may reach 29

# What runs on Docker 29 (iptables backend).  Its iptables layout is 28.x's
# (the captured tests/fixtures/layouts/docker-29.7-iptables-icc-false-user-networks.txt
# is detected and initialised as DOCKER_28 in tests/unit/test_layouts_engines.py, and
# test_engine29_e2e.py checks it on the live engine), so the tests that prove
# docker-fw against a layout (hostile bridge names, 28.x's chains, --filter,
# init on more networks) and those about docker-fw alone (deadlines, kill, bad
# input, --from, ls, import-legacy, the store) need not run a third time.  What a new engine can
# break is its API and its behaviour: the core flows with packets (init, allow,
# add, add-internal, add-input, replay, drop), watch (29's event stream, restarts),
# IPv6, start and add-two-ways (API versions: 29.0 refuses clients below 1.44), the SDK path,
# and user networks read from its API.  module -> test functions (None: all of them).
# (test_host_nftables_e2e.py, test_engine29_e2e.py and test_nftables_e2e.py choose 29 themselves.)
ON_DOCKER29: dict[str, frozenset[str] | None] = {
    "test_core_e2e.py": frozenset({
        "test_init_closes_published_ports_and_is_safe_to_rerun",
        "test_allow_admits_only_the_allowed_source",
        "test_add_opens_only_published_ports",
        "test_replay_follows_a_container_to_its_new_address",
        "test_replay_withdraws_rules_of_a_stopped_container",
        "test_drop_removes_rules_and_record",
        "test_add_internal_allows_one_container_to_reach_another",
        "test_add_input_allows_a_container_to_reach_the_host",
    }),
    "test_watch_e2e.py": frozenset({
        "test_restart_policy_container_gets_its_rules_back",
        "test_stopped_containers_address_does_not_admit_the_next_container",
        "test_engine_restart_is_survived_and_init_reapplied",
        "test_flushed_rules_are_repaired",
        "test_watch_restarted_reconciles_what_it_missed",
        "test_rename_is_followed",
        "test_a_network_created_later_is_initialised",
    }),
    "test_ipv6_e2e.py": None,  # its own dual-stack engines (sb6), see engines_for()
    "test_start_e2e.py": frozenset({
        "test_seed_two_ways_example",
        "test_simulated_reboot_start_pull_deps_restores_everything",
        "test_start_reports_host_ports_it_could_not_get_back",
    }),
    "test_engine_paths_e2e.py": None,
    "test_networks_e2e.py": frozenset({"test_allow_on_user_networks_admits_only_the_allowed_client"}),
    # A real Compose v2 client on 29's API (labels, events of re-created containers):
    # the whole project flow, and a label's egress lock (about 12 s each).
    "test_compose_e2e.py": frozenset({
        "test_a_compose_project_is_firewalled_by_its_labels",
        "test_an_egress_deny_label_locks_its_container_until_the_label_is_edited",
    }),
}

# dockerd options of Docker 29's nftables mode; the accept mark is what its
# per-bridge chains accept early ("ALLOW FW MARK").
NFTABLES_FWMARK = "0x1000000/0x1000000"
NFTABLES_ARGS = ("--firewall-backend=nftables", f"--bridge-accept-fwmark={NFTABLES_FWMARK}")


def selected_engines() -> tuple[str, ...]:
    """The engines DFW_E2E_ENGINES names (all of ENGINES when unset)."""
    raw = os.environ.get("DFW_E2E_ENGINES", "")
    names = tuple(e.strip() for e in raw.split(",") if e.strip()) or ENGINES
    unknown = sorted(set(names) - set(ENGINES))
    if unknown:
        raise pytest.UsageError(f"DFW_E2E_ENGINES: unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    return names


def missing_prerequisites() -> list[str]:
    """Why the sandbox cannot run here; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root (the sandbox creates network namespaces and runs dockerd)")
    path = _env()["PATH"]
    for cmd, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("iptables", "iptables"),
                         ("iptables-save", "iptables"), ("busybox", "busybox-static"),
                         ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(cmd, path=path) is None:
            problems.append(f"{cmd} not found (Debian package {package})")
    bb = shutil.which("busybox", path=path)
    if bb and not is_static(bb):
        problems.append(f"{bb} is dynamically linked: the test image needs busybox-static")
    if importlib.util.find_spec("docker") is None:
        problems.append("the docker SDK for Python is not installed")
    return problems


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"end-to-end prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def only_on(*engines: str):
    """Mark a test that uses ``sandbox`` to run on these engines only."""
    return pytest.mark.parametrize("sandbox", list(engines), indirect=True, ids=engine_id)


def engines_for(module: str, test: str | None = None) -> list[str]:
    """The engines a test (or, test None, a module's fixture) runs on by default:
    20.10 and 28.x always, 29 when ON_DOCKER29 names it."""
    on29 = ON_DOCKER29.get(os.path.basename(module), frozenset())
    wanted = on29 is None or test is None and bool(on29) or test in (on29 or ())
    return [e for e in ENGINES if e != "29" or wanted]


def _parametrises_sandbox(definition) -> bool:
    for mark in definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "sandbox" in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    """``sandbox``'s engines, test by test (engines_for), unless a test narrows them."""
    if "sandbox" not in metafunc.fixturenames or _parametrises_sandbox(metafunc.definition):
        return
    module = os.path.basename(metafunc.module.__file__)
    named = ON_DOCKER29.get(module)
    unknown = sorted(n for n in (named or ()) if not hasattr(metafunc.module, n))
    if unknown:  # a renamed test would silently stop running on 29
        raise pytest.UsageError(f"ON_DOCKER29[{module!r}] names no test {', '.join(unknown)}")
    engines = engines_for(module, metafunc.function.__name__)
    metafunc.parametrize("sandbox", engines, indirect=True, ids=engine_id, scope="session")


def pytest_configure(config):
    selected_engines()  # a typo in DFW_E2E_ENGINES is an error, not a silent skip


def use_checkout_src() -> None:
    """`python -m docker_fw` in the engine namespace: use the checkout's src/ when
    docker_fw is not installed."""
    if importlib.util.find_spec("docker_fw") is None:
        src = str(_REPO / "src")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)


def start_sandbox(engine: str, commands: tuple[tuple[str, str], ...] = (), **kwargs) -> Sandbox:
    """A started sandbox running ENGINE (one of ENGINES); skips (fails under
    CI=true) when a prerequisite is missing: commands are more of them, as
    (command, Debian package) pairs.  kwargs go to Sandbox (name: its name
    before the worker suffix; extra_daemon_args, e.g. NFTABLES_ARGS; icc)."""
    problems = missing_prerequisites()
    name = SANDBOX_NAME if engine == SYSTEM_ENGINE else SANDBOX_NAME + engine
    if engine != SYSTEM_ENGINE:
        eng = _UNPACKED[engine]()
        problem = eng.prepare()
        if problem:
            problems.append(problem)
        kwargs.update(eng.sandbox_kwargs())
    name = kwargs.pop("name", name) + (f"-{_WORKER}" if _WORKER else "")
    sb = Sandbox(name=name, **kwargs)
    if sb.firewall_backend == "nftables":
        commands = (*commands, ("nft", "nftables"))  # Docker's nftables backend runs it
    for cmd, package in dict(commands).items():
        if shutil.which(cmd, path=_env()["PATH"]) is None:
            problems.append(f"{cmd} not found (Debian package {package})")
    if problems:
        _skip_or_fail("; ".join(problems))
    use_checkout_src()
    try:
        sb.start()
        expected = _MAJORS[engine]
        assert sb.engine_major() in expected, f"sandbox {name}: expected Docker {engine}, got {sb.engine_major()}"
    except BaseException:
        sb.stop()
        raise
    return sb


def engine_id(engine: str) -> str:
    """The test id of an engine ("docker28"); tests/conftest.py's xdist
    scheduler sends all tests with one engine id to one worker."""
    return f"docker{engine}"


def nft_engine_id(engine: str) -> str:
    """The test id of an engine in nftables mode ("docker29-nft"): a work unit
    of its own for tests/conftest.py's scheduler."""
    return f"{engine_id(engine)}-nft"


def skip_unselected(engine: str) -> None:
    if engine not in selected_engines():
        pytest.skip(f"Docker {engine}: not in DFW_E2E_ENGINES={os.environ.get('DFW_E2E_ENGINES')}")


@pytest.fixture(scope="session")
def sandbox(request):
    """A started sandbox per engine (pytest_generate_tests says which), stopped
    (and cleaned up) after the session."""
    engine = request.param
    skip_unselected(engine)
    sb = start_sandbox(engine)
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="session", params=["29"], ids=nft_engine_id)
def sandbox29_nftables(request):
    """Docker 29 with --firewall-backend=nftables and an accept mark (NFTABLES_ARGS),
    --icc=false; forwarding on in its namespace.  For the nftables backend's tests."""
    skip_unselected(request.param)
    sb = start_sandbox(request.param, name=SANDBOX_NAME + "29n", extra_daemon_args=list(NFTABLES_ARGS))
    try:
        yield sb
    finally:
        sb.stop()
