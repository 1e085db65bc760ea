"""Which firewall backends a run uses: the engine's firewall backend decides.

Docker 28+ reports it in 'docker info' (FirewallBackend.Driver: "iptables",
"nftables", either with "+firewalld"); older engines do not, and use
iptables.  docker-fw writes its rules where the engine writes its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from . import FirewallBackend
    from .iptables.backend import Runner
    from .nftables.backend import Runner as NftRunner


def uses_nftables(engine_backend: str) -> bool:
    return engine_backend.split("+", 1)[0] == "nftables"


def for_engine(engine_backend: str, firewall: Runner, firewall6: Runner | None,
               nft: NftRunner | None = None) -> list[FirewallBackend]:
    """The backends for an engine whose firewall backend is ENGINE_BACKEND: the
    nftables tables of both families (NFT, else an Nft runner with FIREWALL's
    --verbose printer), else iptables (FIREWALL) and, given, ip6tables (FIREWALL6)."""
    if uses_nftables(engine_backend):
        from .nftables.backend import NftablesBackend

        if nft is None:
            from .nftables.process import Nft

            nft = Nft(verbose=getattr(firewall, "verbose", None))
        return [NftablesBackend(nft, 4), NftablesBackend(nft, 6)]
    from .iptables.backend import IptablesBackend

    backends: list[FirewallBackend] = [IptablesBackend(firewall, 4)]
    if firewall6 is not None:
        backends.append(IptablesBackend(firewall6, 6))
    return backends


def not_for_engine(engine_backend: str, firewall: Runner | None, firewall6: Runner | None,
                   nft: NftRunner | None) -> list[FirewallBackend]:
    """The backends of the firewall backend the engine does NOT use, for the runners
    given (FIREWALL for iptables, NFT for nftables; none: nothing is looked at):
    where 'init' looks for what docker-fw wrote before the engine switched
    (backends.Leftovers)."""
    if uses_nftables(engine_backend):
        return for_engine("iptables", firewall, firewall6) if firewall is not None else []
    return for_engine("nftables", firewall, firewall6, nft) if nft is not None else []

