"""IPv6 rules through real ip6tables-save/-restore, in a throwaway network namespace."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from netns_support import SEED, normalise
from docker_fw.engine import Snapshot, parse_container, parse_network
from docker_fw.model import Kind, RuleSpec, parse_address, parse_filter
from docker_fw.backends.iptables.rules import render
from docker_fw.resolve import resolve

pytestmark = pytest.mark.netns

# Docker 20.10 with --ipv6 --ip6tables: the ip6tables filter table it makes.
SEED6 = SEED.read_text().replace("172.17.0.2/32", "2001:db8:1::242:ac11:2/128")

NET = {"Id": "f" * 64, "Name": "bridge", "Driver": "bridge",
       "Options": {"com.docker.network.bridge.name": "docker0"},
       "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"},
                           {"Subnet": "2001:db8:1::/64", "Gateway": "2001:db8:1::1"}]}}


def snapshot(web6: str) -> Snapshot:
    nets = [parse_network(NET)]
    raw = [{"Id": "a" * 64, "Names": ["/web"], "State": "running", "Ports": [],
            "NetworkSettings": {"Networks": {"bridge": {
                "IPAddress": "172.17.0.2", "Gateway": "172.17.0.1",
                "GlobalIPv6Address": web6, "IPv6Gateway": "2001:db8:1::1"}}}}]
    return Snapshot(containers=[parse_container(r, {"bridge": nets[0]}) for r in raw], networks=nets)


SPECS = [
    RuleSpec("web", Kind.ADD, parse_address("2001:db8:ffff::2"), parse_address("."), dport=80,
             filter=parse_filter("! -i docker0 -o docker0")),
    RuleSpec("web", Kind.ADD, parse_address("198.51.100.2"), parse_address("."), dport=80),
    RuleSpec("web", Kind.INPUT, parse_address("."), parse_address("/"), dport=53, proto="udp"),
]


def desired(web6: str) -> list[dict]:
    snap = snapshot(web6)
    return [dataclasses.asdict(render(r)) for s in SPECS for r in resolve(s, snap)]


@pytest.fixture
def netns6(netns):
    if shutil.which("ip6tables-restore") is None:
        pytest.skip("ip6tables-restore not on PATH")
    netns.run(["ip6tables-restore"], stdin=SEED6)
    return netns


def save6(ns) -> str:
    return normalise(ns.run(["ip6tables-save", "-t", "filter"]).stdout)


def test_ipv6_rules_go_to_ip6tables_only(netns6):
    v4_before = netns6.save()
    answer = netns6.helper("sync", family=6, desired=desired("2001:db8:1::242:ac11:2"), scope=None)
    assert answer["ok"], answer
    assert answer["restores"] == 1  # one transaction
    text = save6(netns6)
    assert "-A DOCKER-FW-FORWARD -s 2001:db8:ffff::2/128 -d 2001:db8:1::242:ac11:2/128" in text
    assert "-A DOCKER-FW-INPUT -s 2001:db8:1::242:ac11:2/128 -d 2001:db8:1::1/128 -p udp" in text
    assert "198.51.100.2" not in text
    assert netns6.save() == v4_before  # iptables untouched
    again = netns6.helper("plan", family=6, desired=desired("2001:db8:1::242:ac11:2"), scope=None)
    assert again["ok"] and again["lines"] == []


def test_ipv6_replay_after_a_move(netns6):
    assert netns6.helper("sync", family=6, desired=desired("2001:db8:1::242:ac11:2"), scope=None)["ok"]
    answer = netns6.helper("sync", family=6, desired=desired("2001:db8:1::242:ac11:9"), scope=["web"])
    assert answer["ok"], answer
    text = save6(netns6)
    assert "2001:db8:1::242:ac11:9/128" in text
    assert "-d 2001:db8:1::242:ac11:2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -m comment" not in text
    assert sum(1 for line in text.splitlines() if "docker-fw:web:" in line) == 2


def test_ipv6_init_on_ip6tables(netns6):
    answer = netns6.helper("init", family=6, bridges=["docker0"])
    assert answer["ok"], answer
    text = save6(netns6)
    assert "-A FORWARD -o docker0 -j DOCKER" not in text
    assert "-A FORWARD -i docker0 -o docker0 -j DOCKER" in text
