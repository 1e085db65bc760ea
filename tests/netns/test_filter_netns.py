"""--filter against real iptables (nf_tables and legacy), in a throwaway network namespace.

What the grammar accepts is held by the kernel as 'ls' prints it; a filter
long enough to pass iptables-restore's line buffer, which used to smuggle a
rule of its own into FORWARD, never reaches iptables-restore.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Callable

import pytest

from netns_support import SEED
from docker_fw.errors import UsageError
from docker_fw.model import parse_filter
from docker_fw.backends.iptables.rules import CHAIN_FORWARD
from docker_fw.backends.iptables.reconcile import quote, rule_line
from docker_fw.backends.iptables.rules import IptablesRule
from test_iptables_netns import as_json, desired, saved, spec
from test_legacy_netns import legacy  # noqa: F401  (a fixture)

pytestmark = pytest.mark.netns


@dataclass(frozen=True)
class Backend:
    name: str  # 'nft' or 'legacy'
    helper: Callable[..., dict]  # fw_helper, running this backend's iptables-save/-restore
    save: Callable[[], str]  # the filter table as this backend's iptables-save prints it
    restore_raw: Callable[[str], object]  # this backend's iptables-restore --noflush, fed directly
    load: Callable[[str], None]  # replace the filter table (flushes it)


@pytest.fixture(params=["nft", "legacy"])
def backend(request) -> Backend:
    if request.param == "nft":
        ns = request.getfixturevalue("netns")
        return Backend(
            "nft", ns.helper, ns.save,
            lambda text: ns.run(["iptables-restore", "--noflush"], stdin=text, check=False), ns.load,
        )
    lns = request.getfixturevalue("legacy")
    return Backend(
        "legacy", lns.helper, lns.legacy_save,
        lambda text: lns.ns.run([lns.binaries["iptables-legacy-restore"], "--wait", "--noflush"], stdin=text, check=False),
        lns.legacy_load,
    )


def saved_lines(backend: Backend) -> dict[str, str]:
    """Each saved rule's line, by its comment."""
    return {r["comment"]: r["line"] for r in saved(backend).get("rules", []) if r["comment"]}


# --- the smuggle of issue #9 -------------------------------------------------------

SMUGGLED = "-I FORWARD 1 -s 198.51.100.3/32 -j ACCEPT"
LINE_BUFFER = 10240  # iptables-restore 1.8.9 reads lines with fgets() into this


def smuggling_rule() -> tuple[IptablesRule, str]:
    """A rule as docker-fw rendered --filter=TEXT before the grammar, and TEXT.

    The denylist let TEXT through (match options only; the rule to smuggle
    hides inside a --string value).  Its restore line is padded with long
    --ctstate lists so that the first LINE_BUFFER - 1 bytes end inside that
    quoted value: iptables-restore then runs the rest as a line of its own,
    '-I FORWARD 1 -s 198.51.100.3/32 -j ACCEPT -m comment --comment " -p tcp ...'.
    """
    [base] = desired([spec(dport=80)])
    head = list(base.matches[:4])  # -s SRC -d DST
    tail = list(base.matches[4:])  # -p tcp -m tcp --dport 80
    hidden = f" {SMUGGLED} -m comment --comment "

    def build(extra: int, xs: int) -> list[str]:
        pad = []
        for _ in range(9):  # 9 x ~1 kB, each under the tokenizer's 1,024-byte word limit
            pad += ["-m", "conntrack", "--ctstate", ",".join(["NEW"] * 250)[:999]]
        pad += ["-m", "conntrack", "--ctstate", "NEW" + ",NEW" * extra]
        return pad + ["-m", "string", "--algo", "bm", "--string", "X" * xs + hidden]

    def split_at(tokens: list[str]) -> int:
        line = rule_line("-A", base.chain, [*head, *tokens, *tail, "-j", base.target])
        return line.index(f" {SMUGGLED}")

    short = LINE_BUFFER - 1 - split_at(build(0, 10))
    tokens = build(short // 4, 10 + short % 4)
    assert split_at(tokens) == LINE_BUFFER - 1
    rule = IptablesRule(base.owner, base.chain, (*head, *tokens, *tail), base.target)
    return rule, " ".join(shlex.quote(t) for t in tokens)


def test_overlong_filter_smuggle_is_refused_with_nothing_applied(backend):
    rule, text = smuggling_rule()
    line = rule_line("-A", rule.chain, rule.argv())
    assert len(line) > LINE_BUFFER
    # The attack is real: iptables-restore itself runs the tail as a rule of its own.
    backend.restore_raw(f"*filter\n:{CHAIN_FORWARD} - [0:0]\n{line}\nCOMMIT\n")
    assert "-A FORWARD -s 198.51.100.3/32 -m comment" in backend.save()
    backend.load(SEED.read_text())
    assert "198.51.100.3" not in backend.save()

    # docker-fw's one batch writer refuses the line (say a record of an older
    # docker-fw rendered it): nothing at all is applied, not even our chains.
    before = backend.save()
    answer = backend.helper("sync", desired=as_json([rule]), scope=None)
    assert answer["ok"] is False, answer
    assert answer["type"] == "FirewallError" and answer["exit_code"] == 4
    assert "nothing was applied" in answer["error"] and "bytes long" in answer["error"]
    assert answer["restores"] == 0  # iptables-restore never ran
    assert backend.save() == before
    # and --filter refuses the text as typed
    with pytest.raises(UsageError, match="too long"):
        parse_filter(text)


# --- what the grammar accepts, as the kernel holds it ----------------------------------

# (filter as typed, what iptables-save prints between '-d DST' and '-m comment');
# None: exactly the filter as 'ls' prints it (-i/-o before -p, modules after it,
# as iptables orders them).  Otherwise iptables' own spelling of the same match
# (defaults it fills in, --syn as --tcp-flags, limit units in full);
# {backend: ...} where nf_tables and legacy print it differently.
TCP80 = "-m tcp --dport 80"
FORMS: list[tuple[str, str | dict | None]] = [
    ("! -i @bridge -o @bridge", "! -i docker0 -o docker0 -p tcp " + TCP80),
    ("-i docker0", None),
    ("-o br-0123456789ab", None),
    ("-i veth+", None),
    ("--in-interface eth0 ! --out-interface eth1", "-i eth0 ! -o eth1 -p tcp " + TCP80),
    ("-m conntrack --ctstate NEW,ESTABLISHED", None),
    ("-m conntrack ! --ctstate INVALID", None),
    ("-m conntrack --ctstatus ASSURED,CONFIRMED", None),
    ("-m conntrack --ctproto udp", "-p tcp -m conntrack --ctproto 17 " + TCP80),
    ("-m conntrack --ctorigdstport 8000:8099", None),
    ("-m conntrack ! --ctorigsrc 192.0.2.0/24 --ctorigdst 192.0.2.7", None),
    ("-m conntrack --ctstate DNAT --ctdir ORIGINAL", None),
    ("-m state ! --state INVALID,UNTRACKED", None),
    ("-m iprange --src-range 192.0.2.1-192.0.2.9", None),
    ("-m iprange ! --dst-range 10.0.0.1-10.0.0.255", None),
    ("-m mac --mac-source 02:42:ac:11:00:02", None),
    ("-m limit --limit 5/min --limit-burst 10", None),
    ("-m limit --limit 100/d", "-p tcp -m limit --limit 100/day " + TCP80),
    ("-m recent --rcheck --seconds 60 --hitcount 4 --name ssh --mask 255.255.255.255 --rsource", None),
    ("-m recent --set --name ssh", "-p tcp -m recent --set --name ssh --mask 255.255.255.255 --rsource " + TCP80),
    ("-m connlimit --connlimit-above 3 --connlimit-mask 24 --connlimit-saddr", None),
    ("-m addrtype ! --dst-type LOCAL,BROADCAST --limit-iface-in", None),
    ("-m length ! --length 0:500", None),
    ("-m ttl --ttl-lt 5", None),
    ("-m string --string 'GET /a b' --algo bm", '-p tcp -m string --string "GET /a b" --algo bm ' + TCP80),
    ("-m tcp --syn", {
        "nft": "-p tcp -m tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN",
        "legacy": "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN " + TCP80,
    }),
    ("-m conntrack --ctstate NEW -m limit --limit 5/min ! -i @bridge",
     "! -i docker0 -p tcp -m conntrack --ctstate NEW -m limit --limit 5/min " + TCP80),
]


def as_ls_prints(text: str) -> str:
    """The matches of a rule whose filter iptables spells as docker-fw records it."""
    words = parse_filter(text)
    interfaces, others, index = [], [], 0
    while index < len(words):
        negated = words[index] == "!"
        option = words[index + negated]
        take = 2 + negated if option in ("-i", "-o") else 1
        (interfaces if option in ("-i", "-o") else others).extend(words[index:index + take])
        index += take
    return " ".join(quote(w) for w in [*interfaces, "-p", "tcp", *others, *TCP80.split()])


def test_accepted_filters_are_held_as_ls_prints_them(backend):
    specs = [spec(dport=80, filter=parse_filter(text)) for text, _ in FORMS]
    rules = desired(specs)
    assert len(rules) == len(FORMS)
    answer = backend.helper("sync", desired=as_json(rules), scope=None)
    assert answer["ok"], answer
    held = saved_lines(backend)
    for (text, printed), rule in zip(FORMS, rules):
        if isinstance(printed, dict):
            printed = printed[backend.name]
        matches = printed or as_ls_prints(text)
        expected = f"-A {rule.chain} -s 203.0.113.0/24 -d 172.17.0.2/32 {matches} -m comment --comment \"{rule.comment}\" -j DOCKER"
        assert held[rule.comment] == expected, text
    # applied once: nothing to do the second time
    assert backend.helper("plan", desired=as_json(rules), scope=None)["lines"] == []
