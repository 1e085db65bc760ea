"""Property-based fuzzing (hypothesis) of import-legacy's input: the old tool's files.

Generated extraRules.json and customHosts.json files mix rules the original
docker-fw wrote (every chain, alias and field kind) with hostile ones (values
of every JSON type, control characters, iptables options in Filter, unknown
and missing fields, the strategies of tests/fuzz_strategies.py), and with
hosts entries that may or may not go with an add-internal rule.

The property, for every generated set of files: import-legacy either

- refuses: UsageError, each problem one warning line naming a file of the
  old tool's, and the store exactly as it was; or
- records: every recorded rule is printed ('ls') as a command that the rule
  grammar reads back as the same rule (so the printed line re-creates it),
  and a second import records nothing.

The world: fakes.FakeEngine (its root holds the containers' directories, as
Docker's data root does) and a real store in a temporary directory.
"""

from __future__ import annotations

import json
import pathlib
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from docker_fw.actions import Service
from docker_fw.errors import UsageError
from docker_fw.legacy_import import HOSTS_FILE, RULES_FILE, import_legacy
from docker_fw.rulegrammar import Origin, checked_spec, parse_from_line
from docker_fw.store import Store
from fakes import FakeEngine, FakeFirewall
from tests.fuzz_strategies import addresses, filters, hostile_text, mostly, protocols

NAMES = ("web", "db", "app", "old")
CHAINS = (("FORWARD", "DOCKER"), ("INPUT", "ACCEPT"), ("DOCKER", "ACCEPT"))
ODD_CHAINS = (("OUTPUT", "ACCEPT"), ("FORWARD", "ACCEPT"), ("DOCKER", "DROP"), ("", ""), ("forward", "docker"))

aliases = mostly(st.sampled_from(("", "", ".", "/", *NAMES)), addresses | hostile_text)
# What the old tool wrote for a side without an alias, or with one (then unused).
side_addresses = mostly(
    st.sampled_from(("198.51.100.2/32", "203.0.113.0/24", "172.17.42.1/32", "172.17.0.10/32")), addresses | hostile_text
)
json_junk = st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-10, 70000) | hostile_text | st.just([])
ports = mostly(st.sampled_from((0, 0, 80, 5432, 53)) | st.integers(0, 65535), json_junk)
texts = lambda valid: mostly(valid, json_junk, one_in=12)  # noqa: E731


@st.composite
def go_rules(draw) -> dict:
    chain, jump = draw(mostly(st.sampled_from(CHAINS), st.sampled_from(ODD_CHAINS) | st.tuples(hostile_text, hostile_text)))
    rule = {
        "Source": draw(texts(side_addresses)), "SourceAlias": draw(texts(aliases)), "SourcePort": draw(ports),
        "Destination": draw(texts(side_addresses)), "DestinationAlias": draw(texts(aliases)),
        "DestinationPort": draw(ports), "Protocol": draw(texts(protocols)), "Filter": draw(texts(filters)),
        "Chain": chain, "JumpTo": jump,
    }
    change = draw(st.integers(0, 15))
    if change == 0:
        del rule[draw(st.sampled_from(sorted(rule)))]
    elif change == 1:
        rule[draw(hostile_text)] = draw(json_junk)
    return rule


@st.composite
def written_rules(draw, owner: str) -> dict:
    """A rule as the old tool's add, allow, add-input, add-internal or add-two-ways wrote it for OWNER."""
    others = [n for n in NAMES if n != owner]
    kind = draw(st.sampled_from(("add", "add-input", "add-internal")))
    rule = {"SourcePort": 0, "DestinationPort": draw(st.integers(1, 65535)), "Protocol": draw(st.sampled_from(("tcp", "udp"))),
            "Filter": "", "Source": "172.17.0.10/32", "Destination": "172.17.0.11/32"}
    if kind == "add":
        outside = draw(st.sampled_from(("198.51.100.2/32", "203.0.113.0/24", "192.0.2.7/32")))
        if draw(st.booleans()):
            rule.update(Source=outside, SourceAlias="", DestinationAlias=".")
        else:
            rule.update(SourceAlias=".", Destination=outside, DestinationAlias="")
        rule.update(Filter=draw(st.sampled_from(("", "! -i docker0 -o docker0", "-m conntrack --ctstate NEW"))),
                    SourcePort=draw(st.sampled_from((0, 1024))), Chain="FORWARD", JumpTo="DOCKER")
    elif kind == "add-input":
        rule.update(SourceAlias=".", Destination="172.17.42.1/32", DestinationAlias="/", Chain="INPUT", JumpTo="ACCEPT")
    else:
        rule.update(SourceAlias=draw(st.sampled_from((*others, "/"))), DestinationAlias=".", Chain="DOCKER", JumpTo="ACCEPT")
    return {key: rule[key] for key in ("Source", "SourceAlias", "SourcePort", "Destination", "DestinationAlias",
                                       "DestinationPort", "Protocol", "Filter", "Chain", "JumpTo")}


def rules_file(owner: str):
    rules = st.lists(mostly(written_rules(owner), go_rules(), one_in=10), max_size=3)
    return st.none() | rules.map(lambda items: {"Rules": items})


files = st.fixed_dictionaries({
    name: st.fixed_dictionaries({
        RULES_FILE: rules_file(name),
        HOSTS_FILE: mostly(st.none(), st.lists(mostly(st.sampled_from(NAMES), hostile_text), max_size=2), one_in=4),
    })
    for name in NAMES
})


def world(root: pathlib.Path) -> FakeEngine:
    engine = FakeEngine(root / "docker" / "containers")
    for name in NAMES:
        engine.add(name, state="exited" if name == "old" else "running")
    return engine


def recorded(store: Store):
    return store.rules(), store.host_entries()


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(files)
def test_old_files_are_refused_whole_or_recorded_as_commands_that_mean_the_same(old_files):
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        engine = world(root)
        for name, documents in old_files.items():
            for file, document in documents.items():
                if document is not None:
                    path = root / "docker" / "containers" / engine.containers[name].id / file
                    path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8", errors="surrogatepass")
        with Store.open(directory=str(root / "state")) as store:
            out: list[str] = []
            warnings: list[str] = []

            def run() -> None:
                engine.forget()
                service = Service(engine, FakeFirewall(), store, out=out.append, warn=warnings.append)
                import_legacy(service, str(root / "docker"))

            try:
                run()
            except UsageError as exc:
                assert "nothing was imported" in str(exc)
                assert warnings, "every refusal names what it refuses"
                containers = str(root / "docker" / "containers") + "/"
                assert all(w.startswith("cannot import " + containers) for w in warnings), warnings
                assert recorded(store) == ([], {})
                event("refused")
                return
            assert not warnings
            event(f"recorded {min(len(store.rules()), 3)}+ rules")
            for spec in store.rules():
                line = spec.describe()
                request = parse_from_line(line, spec.kind.action, Origin.file("ls", 1))
                assert checked_spec(spec.kind.action, request) == spec, line
            before = recorded(store)
            out.clear()
            run()
            assert recorded(store) == before
            assert out[-1] == "import-legacy: 0 rules, 0 hosts entries and 0 host configurations recorded", out
