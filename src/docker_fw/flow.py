"""A new connection to explain, and what a firewall backend says of it: backend-neutral values.

``explain`` (explain.py) turns the user's --source/--dest into one ``Flow``
per path the kernel could take (one per network two containers share); a
backend that can explain (``backends.Explainer``) walks its live ruleset
with it and answers a ``Verdict``.  Neither names iptables: an nftables
backend answers with the same values.
"""

from __future__ import annotations

from .values import dataclass

from .model import RuleSpec

# How a flow's interfaces name "not a Docker bridge": the host's uplink,
# whatever it is called.  Not a valid interface name (it holds parentheses and
# is 10 characters long, but no rule can name it: rule names are checked), so
# no '-i NAME' of a rule matches it, and every '! -i BRIDGE' does.
OUTSIDE = "(outside)"


@dataclass(frozen=True)
class Flow:
    """The first packet of a new connection, as the firewall would see it.

    ``src``/``dst``: addresses; ``iif``/``oif``: the bridge it comes in on and
    leaves by, OUTSIDE for the host's other interfaces, '' for none (``oif``
    of a packet for the host itself).  ``host_port``: for an external client
    reaching a container's published port, the host port it connects to
    (the backend applies its DNAT to ``dst``:``dport``); 0 otherwise.
    ``network``: the Docker network of the path ('' when none).
    """

    src: str
    dst: str
    proto: str
    dport: int
    iif: str
    oif: str
    family: int = 4
    host_port: int = 0
    host_ip: str = ""  # the address a published port is bound to ('' or 0.0.0.0: every one)
    network: str = ""

    @property
    def to_host(self) -> bool:
        return not self.oif


@dataclass(frozen=True)
class Verdict:
    """What a backend's live ruleset does with a Flow.

    ``decided_by``: the rule (or chain policy) that decided, as the backend
    prints it, and ``reason``: why, in words (whose rule it is and what it is
    for).  ``rule``: the recorded docker-fw rule on the path, if one is (an
    'add' rule jumps to Docker's chain, where Docker's rule then accepts);
    ``stale``: a docker-fw rule on the path that no recorded rule makes.
    ``translated``: how the nat table rewrote the destination ('' when it
    did not).  ``trace``: every rule the packet matched, in order.
    """

    allowed: bool
    decided_by: str
    reason: str
    table: str = ""
    chain: str = ""
    rule: RuleSpec | None = None
    rule_line: str = ""
    stale: str = ""
    translated: str = ""
    trace: tuple[str, ...] = ()
