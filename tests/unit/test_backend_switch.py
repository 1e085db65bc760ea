"""What 'init' removes after the engine switched firewall backends (backends.Leftovers):
docker-fw's iptables chains once the engine uses nftables, its nftables tables once
it uses iptables; and where it looks at all (backends.choice.not_for_engine)."""

from __future__ import annotations

import json

from docker_fw.backends import Leftovers
from docker_fw.backends.choice import not_for_engine
from docker_fw.backends.iptables.backend import IptablesBackend
from docker_fw.backends.iptables.process import parse_save
from docker_fw.backends.nftables.backend import NftablesBackend
from docker_fw.backends.nftables.live import parse_own

# Docker 29.7.2's filter table after a restart with --firewall-backend=nftables, as
# captured in the e2e sandbox: Docker deleted its chains but DOCKER (emptied: docker-fw's
# chains still jumped to it) and DOCKER-USER, and kept FORWARD's policy DROP.
AFTER_SWITCH_TO_NFTABLES = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-FW-FORWARD - [0:0]
:DOCKER-FW-INPUT - [0:0]
:DOCKER-FW-INTERNAL - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -j DOCKER-FW-INPUT
-A FORWARD -j DOCKER-FW-FORWARD
-A FORWARD -i docker0 -o docker0 -j DOCKER
-A FORWARD -j DOCKER-USER
-A DOCKER-FW-FORWARD -s 198.51.100.2/32 -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -m comment --comment "docker-fw:web:1c0cd9572b43" -j DOCKER
-A DOCKER-FW-INTERNAL -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "docker-fw:replies" -j ACCEPT
COMMIT
"""


class NoRunner:
    """Stands in for both runners' protocols where the test reads nothing."""

    def __getattr__(self, name):
        raise AssertionError(f"{name}: not asked")


def test_iptables_leftovers_are_the_jumps_then_the_chains():
    backend = IptablesBackend(NoRunner(), 4)
    assert isinstance(backend, Leftovers)
    table = parse_save(AFTER_SWITCH_TO_NFTABLES)
    assert [c.line for c in backend.plan_remove(table)] == [
        "-D INPUT -j DOCKER-FW-INPUT",
        "-D FORWARD -j DOCKER-FW-FORWARD",
        "-F DOCKER-FW-FORWARD", "-F DOCKER-FW-INPUT", "-F DOCKER-FW-INTERNAL",
        "-X DOCKER-FW-FORWARD", "-X DOCKER-FW-INPUT", "-X DOCKER-FW-INTERNAL",
    ]
    # FORWARD's DROP is Docker's (or the host's): said, never changed
    (warning,) = backend.leftover_warnings(table)
    assert "FORWARD policy is DROP" in warning and "'iptables -P FORWARD ACCEPT'" in warning
    clean = parse_save(AFTER_SWITCH_TO_NFTABLES.replace(":FORWARD DROP", ":FORWARD ACCEPT"))
    assert backend.leftover_warnings(clean) == []
    nothing_of_ours = parse_save("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n")
    assert backend.plan_remove(nothing_of_ours) == []


def test_nftables_leftovers_are_its_tables():
    backend = NftablesBackend(NoRunner(), 6)
    assert isinstance(backend, Leftovers)
    own = parse_own([{"table": {"family": "ip6", "name": "docker-fw"}}])
    (change,) = backend.plan_remove(own)
    assert json.loads(change.command) == {"delete": {"table": {"family": "ip6", "name": "docker-fw"}}}
    assert change.line == "delete table ip6 docker-fw" and change.why == "init" and change.family == 6
    assert backend.leftover_warnings(own) == []


def test_leftovers_are_looked_for_only_with_the_runner_given():
    firewall, nft = NoRunner(), NoRunner()
    assert [type(b) for b in not_for_engine("nftables", firewall, None, None)] == [IptablesBackend]
    assert [b.family for b in not_for_engine("nftables+firewalld", firewall, firewall, None)] == [4, 6]
    assert not_for_engine("nftables", None, None, nft) == []  # a test's stand-in engine: no iptables
    assert [type(b) for b in not_for_engine("iptables", firewall, None, nft)] == [NftablesBackend] * 2
    assert not_for_engine("iptables", firewall, None, None) == []  # no nft runner: not looked at
    assert not_for_engine("", firewall, None, None) == []  # an engine that does not say (20.10)
