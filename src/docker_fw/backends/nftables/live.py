"""What the nftables backend reads: its own table, and what it needs of Docker's.

Both come from 'nft -j list table' (nft's JSON), never from the text
listing.  Of Docker's table (``ip docker-bridges``, ``ip6 docker-bridges``)
docker-fw only reads, never writes: the bridges it has chains for, and the
accept mark of its "ALLOW FW MARK" rules (dockerd --bridge-accept-fwmark).
"""

from __future__ import annotations

import json
from ...values import dataclass

from ...errors import FirewallError
from .rules import Mark

DOCKER_TABLE = "docker-bridges"
_BRIDGE_CHAIN = "filter-forward-in__"
_MARK_COMMENT = "ALLOW FW MARK"
_ICC_COMMENT = "ICC"  # moby: 'iifname B counter drop|accept comment "ICC"' (nftabler bridge.go)


@dataclass(frozen=True)
class LiveRule:
    """One rule of our table as nft listed it."""

    chain: str
    handle: int
    comment: str
    expr: str  # its expressions, as JSON text (what a report shows of a foreign rule)

    def jump_target(self) -> str | None:
        """The chain this rule only jumps to, else None."""
        exprs = json.loads(self.expr)
        if len(exprs) == 1 and isinstance(exprs[0], dict) and isinstance(exprs[0].get("jump"), dict):
            return exprs[0]["jump"].get("target")
        return None


@dataclass(frozen=True)
class BaseChain:
    name: str
    hook: str
    priority: int
    policy: str


@dataclass(frozen=True)
class OwnTable:
    """docker-fw's table: its chains (base ones with their hook) and rules."""

    chains: frozenset[str]
    base: tuple[BaseChain, ...]
    rules: tuple[LiveRule, ...]

    def chain_rules(self, chain: str) -> list[LiveRule]:
        return [r for r in self.rules if r.chain == chain]


@dataclass(frozen=True)
class DockerTable:
    """What docker-fw reads of Docker's table: its bridges and its accept marks."""

    bridges: tuple[str, ...]  # those with a filter-forward-in__<bridge> chain
    marks: tuple[Mark, ...]  # every distinct mark of an 'ALLOW FW MARK' rule
    # those whose chain drops traffic within the bridge (its "ICC" rule is a
    # drop: --icc=false, or the network's enable_icc=false)
    icc_off: tuple[str, ...] = ()


@dataclass(frozen=True)
class NftLive:
    """What one family's backend read."""

    family: int
    docker: DockerTable
    ours: OwnTable | None  # None: docker-fw's table does not exist yet

    @property
    def mark(self) -> Mark | None:
        """The engine's accept mark; None when it has none (or, refused, several)."""
        return self.docker.marks[0] if len(self.docker.marks) == 1 else None


def _rules(objects: list[dict]) -> list[dict]:
    return [o["rule"] for o in objects if isinstance(o.get("rule"), dict)]


def parse_docker(objects: list[dict]) -> DockerTable:
    bridges = []
    for o in objects:
        chain = o.get("chain")
        if isinstance(chain, dict) and str(chain.get("name", "")).startswith(_BRIDGE_CHAIN):
            bridges.append(str(chain["name"])[len(_BRIDGE_CHAIN):])
    marks: list[Mark] = []
    icc_off = []
    for rule in _rules(objects):
        chain_name = str(rule.get("chain", ""))
        if (rule.get("comment") == _ICC_COMMENT and chain_name.startswith(_BRIDGE_CHAIN)
                and isinstance(rule.get("expr"), list) and {"drop": None} in rule["expr"]):
            icc_off.append(chain_name[len(_BRIDGE_CHAIN):])
        if rule.get("comment") != _MARK_COMMENT or not str(rule.get("chain", "")).startswith(_BRIDGE_CHAIN):
            continue
        mark = _mark_of(rule.get("expr"))
        if mark is None:
            raise FirewallError(
                f"cannot read the accept mark of Docker's rule {json.dumps(rule.get('expr'))[:200]} "
                f"in table {DOCKER_TABLE}: unrecognised; nothing was changed"
            )
        if mark not in marks:
            marks.append(mark)
    return DockerTable(tuple(bridges), tuple(marks), tuple(icc_off))


def _mark_of(exprs: object) -> Mark | None:
    """The mark of "meta mark [& MASK] == VALUE ... accept" (moby: nftFwMark)."""
    if not isinstance(exprs, list) or not exprs or not isinstance(exprs[0], dict):
        return None
    match = exprs[0].get("match")
    if not isinstance(match, dict) or match.get("op") not in ("==", "in"):
        return None
    left, right = match.get("left"), match.get("right")
    if not isinstance(right, int) or isinstance(right, bool):
        return None
    if left == {"meta": {"key": "mark"}}:
        return Mark(right)
    if isinstance(left, dict) and isinstance(left.get("&"), list) and len(left["&"]) == 2:
        meta, mask = left["&"]
        if meta == {"meta": {"key": "mark"}} and isinstance(mask, int) and not isinstance(mask, bool):
            return Mark(right, mask)
    return None


def parse_own(objects: list[dict]) -> OwnTable:
    chains = set()
    base = []
    for o in objects:
        chain = o.get("chain")
        if not isinstance(chain, dict):
            continue
        chains.add(str(chain.get("name", "")))
        if "hook" in chain:
            base.append(BaseChain(str(chain["name"]), str(chain["hook"]), int(chain.get("prio", 0)), str(chain.get("policy", ""))))
    rules = tuple(
        LiveRule(str(r.get("chain", "")), int(r.get("handle", 0)), str(r.get("comment", "")), json.dumps(r.get("expr", [])))
        for r in _rules(objects)
    )
    return OwnTable(frozenset(chains), tuple(base), rules)
