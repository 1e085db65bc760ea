"""Per-owner chains (kube-proxy style) against one chain per kind (docker-fw's layout).

Issue #10 asks whether each container ("owner") should get a chain of its own,
so that a scoped replay becomes "flush and refill one chain" instead of
deleting the owner's rules and inserting the new ones at computed positions
in the one shared chain.  This times what the kernel side of each costs, in a
throwaway network namespace (never the host's firewall), for --owners owners
with --rules-per-owner rules each:

- shared: one chain holding every rule (as DOCKER-FW-FORWARD does); a scoped
  change is one ``iptables-restore --noflush`` batch of ``-D`` for each of the
  owner's old rules and ``-I CHAIN POS`` for each new one;
- per-owner: one jump per owner (``-d ADDR -j OWNER-CHAIN``) in the shared
  chain, each owner's rules in its own chain; a scoped change is ``-F`` of
  that chain and ``-A`` of each new rule.

Both are timed with the read docker-fw makes first (``iptables-save -t
filter``: the whole table, as for any plan) and, for per-owner chains, the
read of the one chain (``iptables -S CHAIN``) such a design could make
instead; with --variant, for iptables-nft and iptables-legacy.  Printed:
median and p90 over --runs rounds (alternating), and the rules a new
connection to the last owner passes in each layout (N x R against N + R).

Run as root from the repository: ``sudo .venv/bin/python -m bench.bench_owner_chains``.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import time

from bench.common import require_root
from tests.netns.netns_support import Netns

SHARED = "DFW-BENCH-FWD"


def owner_chain(owner: int) -> str:
    return f"DFW-BENCH-O{owner:04d}"


def owner_address(owner: int) -> str:
    return f"172.20.{owner // 250}.{owner % 250 + 2}"


def rule(owner: int, index: int, generation: int) -> str:
    """One allow rule of OWNER (its matches, without -A/-I and the chain)."""
    source = f"198.{18 + generation % 2}.{index}.{owner % 250 + 1}"
    return (f"-s {source}/32 -d {owner_address(owner)}/32 -p tcp -m tcp --dport {1000 + index} "
            f'-m comment --comment "docker-fw:o{owner}" -j ACCEPT')


def shared_table(owners: int, per_owner: int) -> str:
    lines = ["*filter", f":{SHARED} - [0:0]", f"-A FORWARD -j {SHARED}"]
    lines += [f"-A {SHARED} {rule(o, i, 0)}" for o in range(owners) for i in range(per_owner)]
    return "\n".join(lines + ["COMMIT", ""])


def per_owner_table(owners: int, per_owner: int) -> str:
    lines = ["*filter", f":{SHARED} - [0:0]", *(f":{owner_chain(o)} - [0:0]" for o in range(owners)),
             f"-A FORWARD -j {SHARED}"]
    lines += [f"-A {SHARED} -d {owner_address(o)}/32 -j {owner_chain(o)}" for o in range(owners)]
    lines += [f"-A {owner_chain(o)} {rule(o, i, 0)}" for o in range(owners) for i in range(per_owner)]
    return "\n".join(lines + ["COMMIT", ""])


def shared_change(owner: int, per_owner: int, generation: int) -> str:
    """Replace OWNER's rules in the shared chain: delete the old, insert the new
    where the old ones started (owner * per_owner + 1: the position arithmetic)."""
    old, new = generation - 1, generation
    lines = ["*filter"]
    lines += [f"-D {SHARED} {rule(owner, i, old)}" for i in range(per_owner)]
    lines += [f"-I {SHARED} {owner * per_owner + 1 + i} {rule(owner, i, new)}" for i in range(per_owner)]
    return "\n".join(lines + ["COMMIT", ""])


def per_owner_change(owner: int, per_owner: int, generation: int) -> str:
    lines = ["*filter", f"-F {owner_chain(owner)}"]
    lines += [f"-A {owner_chain(owner)} {rule(owner, i, generation)}" for i in range(per_owner)]
    return "\n".join(lines + ["COMMIT", ""])


def timed(ns: Netns, argv: list[str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    ns.run(argv, stdin=stdin)
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure(variant: str, owners: int, per_owner: int, runs: int) -> dict[str, list[float]]:
    restore, save, listing = f"iptables-{variant}-restore", f"iptables-{variant}-save", f"iptables-{variant}"
    scoped = owners // 2
    times: dict[str, list[float]] = {"shared": [], "per-owner": [], "per-owner, one-chain read": []}
    namespaces = {}
    for layout, table in (("shared", shared_table), ("per-owner", per_owner_table)):
        name = f"dfw-bc-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        namespaces[layout] = Netns(name)
        namespaces[layout].run([restore], stdin=table(owners, per_owner))
    try:
        for generation in range(1, runs + 1):
            ns = namespaces["shared"]
            times["shared"].append(timed(ns, [save, "-t", "filter"])
                                   + timed(ns, [restore, "--noflush"], shared_change(scoped, per_owner, generation)))
            ns = namespaces["per-owner"]
            change = per_owner_change(scoped, per_owner, generation)
            if generation % 2:
                times["per-owner"].append(timed(ns, [save, "-t", "filter"]) + timed(ns, [restore, "--noflush"], change))
            else:
                times["per-owner, one-chain read"].append(
                    timed(ns, [listing, "-S", owner_chain(scoped)]) + timed(ns, [restore, "--noflush"], change))
        # the change did what it says: the owner's rules are the last generation's, in place
        saved = namespaces["shared"].run([save, "-t", "filter"]).stdout.splitlines()
        ours = [line for line in saved if line.startswith(f"-A {SHARED} ")]
        first = scoped * per_owner
        expected = [f"-A {SHARED} {rule(scoped, i, runs)}" for i in range(per_owner)]
        assert ours[first:first + per_owner] == expected, ours[first:first + per_owner]
    finally:
        for ns in namespaces.values():
            subprocess.run(["ip", "netns", "delete", ns.name], capture_output=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--rules-per-owner", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--variant", choices=("nft", "legacy"), action="append",
                        help="iptables variant (repeatable; default both)")
    args = parser.parse_args()
    require_root()
    total = args.owners * args.rules_per_owner
    print(f"{args.owners} owners x {args.rules_per_owner} rules = {total} rules; scoped change of one owner "
          f"({args.rules_per_owner} rules replaced), read + iptables-restore --noflush; {args.runs} rounds")
    print(f"rules a new connection to the last owner passes: shared {total}, "
          f"per-owner {args.owners + args.rules_per_owner}\n")
    print(f"{'variant':<8} {'layout':<27} {'median':>8} {'p90':>8}")
    for variant in args.variant or ["nft", "legacy"]:
        for layout, values in measure(variant, args.owners, args.rules_per_owner, args.runs).items():
            print(f"{variant:<8} {layout:<27} {statistics.median(values) * 1000:>6.1f}ms "
                  f"{percentile(values, 90) * 1000:>6.1f}ms")


if __name__ == "__main__":
    main()
