"""The firewall-backend seam: what the service layer asks of a firewall.

A backend owns some chains (or tables) of one packet filter for one address
family.  The service layer never sees its syntax: it reads what the backend
owns (``read``), asks for the changes that make it hold the desired rules
for a scope (``plan``), and hands those back in one atomic batch
(``apply``).  IPv4 and IPv6 are two instances of the same backend, not
special cases: a backend that is not ``required`` may be absent (``read``
returns None), and its rules are then left out with ``unmanaged_note``.

Two implement it: ``backends.iptables`` (iptables and ip6tables) and
``backends.nftables`` (docker-fw's tables ``ip docker-fw`` and ``ip6
docker-fw``, for Docker's nftables mode); ``backends.choice`` picks by what
the engine uses.

``Explainer`` is optional: a backend that can walk its live ruleset the way
the kernel would for a new connection ('docker-fw explain') implements it
too; 'explain' says so plainly for a backend that does not (nftables does not).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # types only: the backends import resolve, which imports them
    from collections.abc import Sequence

    from ..engine import Network
    from ..flow import Flow, Verdict
    from ..model import RuleSpec
    from ..resolve import ResolvedRule

# What a backend read of the live firewall (an iptables filter table): opaque
# to the service layer, handed back to the backend that read it.
Live = Any


class Change(Protocol):
    """One change of a batch: the service layer only reports it, never reads its syntax."""

    line: str  # the change in the backend's own syntax (for reports and -v)
    why: str  # the owner it is for, or a short reason such as 'setup'
    note: str  # what the line means, when the line alone does not say
    family: int  # 4 or 6

    @property
    def verb(self) -> str:
        """'add' or 'delete' (a rule of an owner), 'create' or 'insert' (what rules live in), or 'change'."""

    @property
    def shown(self) -> str:
        """The line with its note, as -v prints it."""


@runtime_checkable
class FirewallBackend(Protocol):
    family: int  # 4 or 6: the address family of the rules it holds
    label: str  # how messages name it ('' for the primary one, 'IPv6')
    # True: the firewall must be there (an error otherwise); False: it may be
    # absent (read() None) and its rules are then left out, with this note.
    required: bool
    unmanaged_note: str

    def read(self) -> Live | None:
        """What is live now, of what this backend owns; None: not in use here."""

    def plan(self, live: Live, desired: list[ResolvedRule], scope: set[str] | None) -> list[Change]:
        """The changes that make the owners in scope hold exactly their desired
        rules of this backend's family (None: every owner); others are left alone."""

    def apply(self, live: Live, changes: list[Change]) -> None:
        """One atomic batch: all of the changes or none (FirewallError)."""

    def expressible(self, rule: ResolvedRule) -> str | None:
        """Why this backend cannot hold the rule (of its family); None when it can.

        The service layer asks before it records a rule (refused: exit 2) and
        before it plans a recorded one (withdrawn, like a stopped container's)."""

    def covers(self, network: Network) -> bool:
        """Whether 'init' reshapes this network's bridge in this backend."""

    def plan_init(self, live: Live, bridges: list[str], engine_backend: str, existing: Iterable[str]) -> list[Change]:
        """The changes 'init' makes for these bridges (empty when done already)."""

    def ensure(self, live: Live) -> list[Change]:
        """The changes that create what the rules live in (chains, jumps)."""

    def is_initialised(self, live: Live, bridges: list[str], engine_backend: str | None = None) -> bool:
        """Whether 'init' is done for these bridges."""

    def foreign_rules(self, live: Live) -> list[str]:
        """Rules in what this backend owns that it did not write."""


@runtime_checkable
class Explainer(Protocol):
    """Optional for a FirewallBackend: what its live ruleset does with a new connection."""

    def read_paths(self) -> Live | None:
        """What a walk needs, read live (iptables: the raw, nat and filter tables);
        None: this backend is not in use here."""

    def explain(
        self,
        live: Live,
        flow: Flow,
        recorded: Sequence[tuple[RuleSpec, ResolvedRule]],
        adding: Sequence[ResolvedRule] = (),
        replaying: Sequence[str] = (),
    ) -> Verdict:
        """The verdict on FLOW and the rule that decided it.  RECORDED: the recorded
        rules as resolved now, to name the one a live rule of ours comes from.
        ADDING, REPLAYING: rules to add and containers whose recorded rules to
        replay first (as recording or replaying them would), to check that a
        suggestion would let the flow through; nothing live changes."""


@runtime_checkable
class Leftovers(Protocol):
    """Optional for a FirewallBackend: what docker-fw wrote there while the engine
    used this firewall backend, for 'init' to remove once the engine uses the other
    one (a stale copy of the rules, at addresses that may be others' by now)."""

    def read_leftovers(self) -> Live | None:
        """What is there of docker-fw's (and what else 'init' warns about); None when
        there is nothing, or this firewall cannot be read here (e.g. no nft)."""

    def plan_remove(self, live: Live) -> list[Change]:
        """The changes that remove every chain, jump or table of docker-fw's (one batch)."""

    def leftover_warnings(self, live: Live) -> list[str]:
        """What of this firewall, not docker-fw's to change, still stands in the way."""


@runtime_checkable
class BlockLogger(Protocol):
    """Optional for a FirewallBackend: logging the new connections its whitelist
    drops ('init --log-blocked'); one without it is warned about when logging is on."""

    def plan_log(self, live: Live, bridges: list[str], enabled: bool, before: Sequence[Change] = ()) -> list[Change]:
        """The changes that make it log them for BRIDGES (ENABLED), or log none (not
        ENABLED); BEFORE: the changes the same batch makes first."""
