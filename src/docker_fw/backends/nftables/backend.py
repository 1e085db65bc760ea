"""NftablesBackend: one family of nftables behind the FirewallBackend protocol.

For Docker 29's nftables firewall backend (dockerd --firewall-backend=nftables).
Docker's rules live in its tables ``ip docker-bridges`` and ``ip6
docker-bridges``, which nobody else may touch.  docker-fw keeps a table of
its own per family (``ip docker-fw``, ``ip6 docker-fw``) whose base chains
run just before Docker's (priority filter - 1) on the same hooks:

- ``forward`` (hook forward) jumps to ``fw-egress`` (egress locks: outbound
  rules return from it, above the locks' drops of what a locked container
  starts beyond its own bridge), ``fw-forward`` ('add' rules: a match
  is accepted here, which is not final: Docker's chain still accepts only
  published ports), ``fw-internal`` ('add-internal' rules: a match is given
  the engine's accept mark, which Docker's per-bridge chain accepts before
  its ICC drop) and ``fw-init`` (init's drops: a new connection from outside
  a bridge into it; a drop is final);
- ``input`` (hook input) jumps to ``fw-input`` ('add-input' rules: a match
  is given the accept mark and accepted; Docker has no input chain, so the
  mark is for a host firewall whose input chain drops: it accepts the mark)
  and ``fw-input-lock`` (egress locks: new traffic from a locked container to
  the host, dropped unless an add-input rule accepted it first).

Every change is one 'nft -j -f -' batch (one kernel transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from ... import values
from ...values import dataclass
from typing import TYPE_CHECKING, Protocol

from ...errors import FirewallError
from ...egress import ResolvedLock
from ...resolve import ResolvedRule
from ..tag import parse_comment
from .live import DOCKER_TABLE, LiveRule, NftLive, OwnTable, parse_docker, parse_own
from .rules import (
    BASE_CHAINS,
    CHAIN_INIT,
    INIT_PREFIX,
    NO_MARK,
    ORDERED_CHAINS,
    PRIORITY,
    RULE_CHAINS,
    TABLE,
    Mark,
    NftRule,
    Unexpressible,
    init_rule,
    interface_problem,
    neighbour_bridge,
    neighbour_rule,
    nft_family,
    render_all,
)

if TYPE_CHECKING:  # annotations only
    from ...engine import Network

_NOTHING = "nothing was changed"
UNMANAGED_NFT6 = f"IPv6 rules not applied: the engine has no table ip6 {DOCKER_TABLE} (is IPv6 off in the kernel?)"


class Runner(Protocol):
    """What the backend runs (``process.Nft``)."""

    def list_table(self, family: str, name: str) -> list[dict] | None: ...

    def apply(self, commands: list[str], shown: list[str]) -> None: ...


@dataclass(frozen=True)
class NftChange:
    """One command of an 'nft -j -f -' batch, with why it is there."""

    command: str  # one JSON command object, as text
    line: str  # the same command in nft's syntax (reports, --verbose)
    why: str  # owner name, 'init' or 'setup'
    verb: str = "add"  # add, delete (rules), create, insert (tables, chains, jumps), change (a flush)
    note: str = ""  # what a deleted rule was
    family: int = 4

    @property
    def shown(self) -> str:
        return f"{self.line}  ({self.note})" if self.note else self.line


class NftablesBackend:
    """docker-fw's nftables table of one family (4: ip, 6: ip6).

    The IPv4 instance is required: without Docker's table ``ip
    docker-bridges`` the engine is not in nftables mode here.  The IPv6 one
    is used where ``ip6 docker-bridges`` exists.
    """

    def __init__(self, runner: Runner, family: int = 4):
        self.runner = runner
        self.family = family
        self.required = family == 4
        self.label = "" if family == 4 else "IPv6"
        self.unmanaged_note = "" if family == 4 else UNMANAGED_NFT6
        self.nft_family = nft_family(family)

    def __repr__(self) -> str:
        return f"NftablesBackend(family={self.family})"

    # -- the commands of a batch ----------------------------------------------

    def _ref(self, **fields) -> dict:
        return {"family": self.nft_family, "table": TABLE, **fields}

    def _change(self, verb: str, obj: str, body: dict, line: str, why: str, note: str = "") -> NftChange:
        command = json.dumps({{"create": "add", "change": "flush"}.get(verb, verb): {obj: body}}, ensure_ascii=True)
        return NftChange(command, line, why, verb, note, self.family)

    def _add_rule(self, chain: str, expr: list[dict], comment: str, text: str, why: str, verb: str = "add") -> NftChange:
        """VERB: 'add' (a rule of an owner, or init's), 'insert' (a jump: what rules live in)."""
        body = self._ref(chain=chain, expr=expr)
        if comment:
            body["comment"] = comment
        command = json.dumps({"add": {"rule": body}}, ensure_ascii=True)
        return NftChange(command, f"add rule {self.nft_family} {TABLE} {chain} {text}", why, verb, "", self.family)

    def _delete_rule(self, rule: LiveRule, why: str, note: str = "") -> NftChange:
        body = self._ref(chain=rule.chain, handle=rule.handle)
        line = f"delete rule {self.nft_family} {TABLE} {rule.chain} handle {rule.handle}"
        return self._change("delete", "rule", body, line, why, note or describe(rule))

    def _add(self, rule: NftRule, why: str, top: bool = False) -> NftChange:
        """Append RULE to its chain, or (TOP) insert it at the chain's head."""
        change = self._add_rule(rule.chain, rule.expr(), rule.comment, rule.text(), why)
        if not top:
            return change
        command = json.dumps({"insert": json.loads(change.command)["add"]}, ensure_ascii=True)
        return values.replace(change, command=command, line="insert" + change.line[len("add"):])

    # -- the protocol ------------------------------------------------------------

    def read(self) -> NftLive | None:
        docker = self.runner.list_table(self.nft_family, DOCKER_TABLE)
        if docker is None:
            if not self.required:
                return None
            raise FirewallError(
                f"no nftables table {self.nft_family} {DOCKER_TABLE}: is the Docker engine running with "
                "--firewall-backend=nftables, in this network namespace?"
            )
        ours = self.runner.list_table(self.nft_family, TABLE)
        return NftLive(self.family, parse_docker(docker), parse_own(ours) if ours is not None else None)

    def plan(
        self, live: NftLive, desired: list[ResolvedRule | ResolvedLock], scope: set[str] | None
    ) -> list[NftChange]:
        mine = [r for r in desired if r.family == self.family and (scope is None or r.owner in scope)]
        changes: list[NftChange] = []
        if self.required or mine or live.ours is not None:
            changes.extend(self.ensure(live))
        wanted: dict[tuple[str, str], NftRule] = {}
        for item in mine:
            try:
                rendered = render_all([item], live.mark)
            except Unexpressible as exc:
                raise FirewallError(f"{item.owner}: {exc}; {_NOTHING}") from None
            for rule in rendered:
                wanted.setdefault(rule.key, rule)
        actual: dict[tuple[str, str], list[LiveRule]] = {}
        for rule in live.ours.rules if live.ours else ():
            key = parse_comment(rule.comment) if rule.chain in RULE_CHAINS else None
            if key is not None and (scope is None or key[0] in scope):
                actual.setdefault(key, []).append(rule)
        misplaced = _below_a_lock(live, wanted)
        for key, rules in actual.items():
            for rule in rules if key not in wanted else rules[1:]:
                changes.append(self._delete_rule(rule, key[0]))
            if key in misplaced:
                changes.append(self._delete_rule(rules[0], key[0], "below a lock: moved above it"))
        for key, rule in wanted.items():
            if key not in actual or key in misplaced:
                # in fw-egress, a lock's drop goes last and the rest first
                changes.append(self._add(rule, rule.owner, top=rule.chain in ORDERED_CHAINS and not rule.last))
        return changes

    def apply(self, live: NftLive, changes: list[NftChange]) -> None:
        if changes:
            self.runner.apply([c.command for c in changes], [c.shown for c in changes])

    def expressible(self, rule: ResolvedRule | ResolvedLock) -> str | None:
        if rule.family != self.family:
            return f"an IPv{rule.family} rule, not an IPv{self.family} one"
        try:
            render_all([rule], Mark(1))  # the engine's mark is read live; any will do to check the rest
        except Unexpressible as exc:
            return str(exc)
        return None

    def covers(self, network: Network) -> bool:
        return self.family == 4 or bool(network.subnets6)

    def _setup_table(self, live: NftLive, chains: Iterable[str]) -> list[NftChange]:
        """Create the table and CHAINS where missing ('add' of what exists changes nothing)."""
        ours = live.ours
        changes = []
        if ours is None:
            changes.append(self._create_table())
        hooks = {name: hook for name, hook, _ in BASE_CHAINS}
        for chain in chains:
            if ours is not None and chain in ours.chains:
                continue
            body = self._ref(name=chain)
            line = f"add chain {self.nft_family} {TABLE} {chain}"
            if chain in hooks:
                body.update(type="filter", hook=hooks[chain], prio=PRIORITY, policy="accept")
                line += f" {{ type filter hook {hooks[chain]} priority {PRIORITY}; policy accept; }}"
            changes.append(self._change("create", "chain", body, line, "setup"))
        return changes

    def _create_table(self) -> NftChange:
        body = {"family": self.nft_family, "name": TABLE}
        return self._change("create", "table", body, f"add table {self.nft_family} {TABLE}", "setup")

    def ensure(self, live: NftLive) -> list[NftChange]:
        """Our table, its chains, and each base chain's jumps, exactly and in order
        (a base chain holding anything else is flushed and filled again)."""
        regular = [*RULE_CHAINS, CHAIN_INIT]
        changes = self._setup_table(live, [*regular, *(name for name, _, _ in BASE_CHAINS)])
        for name, _, targets in BASE_CHAINS:
            rules = live.ours.chain_rules(name) if live.ours else []
            if [r.jump_target() for r in rules] == list(targets):
                continue
            if rules:
                body = self._ref(name=name)
                changes.append(self._change("change", "chain", body, f"flush chain {self.nft_family} {TABLE} {name}", "setup"))
            for target in targets:
                changes.append(self._add_rule(name, [{"jump": {"target": target}}], "", f"jump {target}", "setup", "insert"))
        return changes

    def _mark_for_init(self, live: NftLive) -> Mark:
        marks = live.docker.marks
        if len(marks) > 1:
            raise FirewallError(
                f"Docker's bridges carry different accept marks ({', '.join(m.option for m in marks)}): "
                f"unrecognised; {_NOTHING}"
            )
        if not marks:
            raise FirewallError(f"{NO_MARK}; {_NOTHING}")
        mark = marks[0]
        if mark.value & mark.mask == 0 or mark.value & ~mark.mask & 0xFFFFFFFF:
            raise FirewallError(
                f"the engine's accept mark {mark.option} would match unmarked packets (or sets bits "
                f"outside its mask): run dockerd with another --bridge-accept-fwmark; {_NOTHING}"
            )
        return mark

    def _init_rules(self, live: NftLive) -> dict[str, list[LiveRule]]:
        found: dict[str, list[LiveRule]] = {}
        for rule in live.ours.chain_rules(CHAIN_INIT) if live.ours else []:
            if rule.comment.startswith(INIT_PREFIX):
                found.setdefault(rule.comment[len(INIT_PREFIX):], []).append(rule)
        return found

    def plan_init(self, live: NftLive, bridges: list[str], engine_backend: str, existing: Iterable[str]) -> list[NftChange]:
        """init: the accept mark must be set; each bridge gets fw-init's drop (once);
        the drops of bridges that are gone are deleted.  Empty when done already."""
        mark = self._mark_for_init(live)
        for bridge in bridges:
            problem = interface_problem(bridge)
            if problem:
                raise FirewallError(
                    f"bridge {ascii(bridge)}: {problem}, so docker-fw cannot close it; {_NOTHING} "
                    "('docker-fw init --network NAME' limits init to other networks)"
                )
        present = self._init_rules(live)
        changes: list[NftChange] = []
        for bridge in bridges:
            copies = present.get(bridge, [])
            if not copies:
                changes.append(self._add(init_rule(bridge, self.family), "init"))
            changes.extend(self._delete_rule(rule, "init", "a second copy") for rule in copies[1:])
        existing = set(existing)
        for bridge, copies in present.items():
            if bridge not in existing and bridge not in bridges:
                changes.extend(self._delete_rule(rule, "init", "its network is gone") for rule in copies)
        changes.extend(self._plan_neighbours(live, bridges, existing, mark))
        if changes:
            # fw-init must exist before a rule is added to it: 'add' of what exists changes nothing
            changes = self._setup_table(live, [CHAIN_INIT]) + changes
        return changes

    def _plan_neighbours(self, live: NftLive, bridges: list[str], existing: set[str], mark: Mark) -> list[NftChange]:
        """IPv6: init's neighbour-discovery mark (neighbour_rule), once, for each of
        BRIDGES whose chain in Docker's table drops traffic within it (icc off);
        deleted where icc is on, for a network that is gone, or with another mark."""
        present: dict[str, list[LiveRule]] = {}
        for rule in live.ours.chain_rules(CHAIN_INIT) if live.ours else []:
            bridge = neighbour_bridge(rule.comment)
            if bridge is not None:
                present.setdefault(bridge, []).append(rule)
        changes: list[NftChange] = []
        wanted = {b: neighbour_rule(b, mark) for b in bridges if self.family == 6 and b in live.docker.icc_off}
        for bridge, rule in wanted.items():
            copies = [r for r in present.get(bridge, []) if r.comment == rule.comment]
            if not copies:
                changes.append(self._add(rule, "init"))
            changes.extend(self._delete_rule(r, "init", "a second copy") for r in copies[1:])
        for bridge, copies in present.items():
            if bridge in wanted:
                stale, why = [r for r in copies if r.comment != wanted[bridge].comment], "another accept mark"
            elif bridge in bridges:
                stale, why = copies, "icc is on: Docker accepts it"
            elif bridge not in existing:
                stale, why = copies, "its network is gone"
            else:
                continue  # a network 'init --network' leaves out: not init's to change now
            changes.extend(self._delete_rule(r, "init", why) for r in stale)
        return changes

    def is_initialised(self, live: NftLive, bridges: list[str], engine_backend: str | None = None) -> bool:
        try:
            pending = self.plan_init(live, bridges, engine_backend or "", bridges)
        except FirewallError:
            return False
        return live.ours is not None and not pending and not self.ensure(live)

    # Leftovers (backends.Leftovers): what 'init' removes after the engine moved to
    # its iptables backend.  Docker then deletes its tables; ours would go on
    # dropping new connections into the bridges (fw-init) that no stale rule admits.

    def read_leftovers(self) -> OwnTable | None:
        try:
            ours = self.runner.list_table(self.nft_family, TABLE)
        except FirewallError:
            return None  # no nft here (or no IPv6): nothing of ours either
        return parse_own(ours) if ours is not None else None

    def plan_remove(self, live: OwnTable) -> list[NftChange]:
        body = {"family": self.nft_family, "name": TABLE}
        line = f"delete table {self.nft_family} {TABLE}"
        return [self._change("delete", "table", body, line, "init", "left from the engine's nftables backend")]

    def leftover_warnings(self, live: OwnTable) -> list[str]:
        return []

    def foreign_rules(self, live: NftLive) -> list[str]:
        ours = live.ours
        if ours is None:
            return []
        found = []
        jumps = {name: targets for name, _, targets in BASE_CHAINS}
        for rule in ours.rules:
            if rule.chain in RULE_CHAINS:
                foreign = parse_comment(rule.comment) is None
            elif rule.chain == CHAIN_INIT:
                foreign = not rule.comment.startswith(INIT_PREFIX) and neighbour_bridge(rule.comment) is None
            else:
                foreign = rule.jump_target() not in jumps.get(rule.chain, ())
            if foreign:
                found.append(f"foreign rule in {self.nft_family} {TABLE} {rule.chain}: {describe(rule)}")
        known = set(RULE_CHAINS) | {CHAIN_INIT} | set(jumps)
        found.extend(f"foreign chain in {self.nft_family} {TABLE}: {name}" for name in sorted(ours.chains - known))
        return found


def _below_a_lock(live: NftLive, wanted: dict[tuple[str, str], NftRule]) -> set[tuple[str, str]]:
    """The wanted rules (not locks) of ORDERED_CHAINS that are live below a wanted
    lock (placed by hand, or left by an older order): they must move above it."""
    found: set[tuple[str, str]] = set()
    for chain in ORDERED_CHAINS:
        seen_lock = False
        for rule in live.ours.chain_rules(chain) if live.ours else []:
            key = parse_comment(rule.comment)
            if key not in wanted:
                continue
            if wanted[key].last:
                seen_lock = True
            elif seen_lock:
                found.add(key)
    return found


def describe(rule: LiveRule) -> str:
    """A live rule for a report: its comment and handle, else its expressions."""
    if rule.comment:
        return f"handle {rule.handle} comment {json.dumps(rule.comment, ensure_ascii=True)}"
    return f"handle {rule.handle} {rule.expr[:200]}"
