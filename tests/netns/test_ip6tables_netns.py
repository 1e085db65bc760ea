"""IPv6 rules through real ip6tables-save/-restore, in a throwaway network namespace."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time

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
    # --icc=false: neighbour discovery within docker0 is accepted above Docker's drop,
    # spelt as the real ip6tables-save prints it (else a second init would add it again)
    forward = [line for line in text.splitlines() if line.startswith("-A FORWARD ")]
    drop = forward.index("-A FORWARD -i docker0 -o docker0 -j DROP")
    for icmp_type in ("135", "136"):
        accept = (f"-A FORWARD -i docker0 -o docker0 -p ipv6-icmp -m icmp6 --icmpv6-type {icmp_type} "
                  "-m comment --comment docker-fw-nd -j ACCEPT")
        assert accept in forward and forward.index(accept) < drop, text
    assert netns6.helper("init", family=6, bridges=["docker0"])["ok"]
    assert save6(netns6) == text  # a second init changes nothing


def test_an_ipv6_lock_keeps_the_containers_neighbour_discovery(netns6):
    """Neighbour discovery is never a tracked connection: a lock that dropped it
    would cut a locked container's IPv6 off once its neighbour entries expired.
    With the caches flushed, the port its add-input rule allows is reached, and
    the lock still stops another port."""
    from docker_fw.backends.iptables.rules import render_all
    from docker_fw.egress import resolve_lock

    web6 = "2001:db8:1::242:ac11:2"
    host = netns6
    container = f"{host.name}-c"  # the container's own namespace, on a veth into docker0
    subprocess.run(["ip", "netns", "add", container], check=True, capture_output=True)
    try:
        for argv in (
            ["ip", "link", "add", "docker0", "type", "bridge"],
            ["ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "docker0", "nodad"],
            ["ip", "link", "set", "docker0", "up"],
            ["ip", "link", "add", "veth-web", "type", "veth", "peer", "name", "eth0", "netns", container],
            ["ip", "link", "set", "veth-web", "master", "docker0", "up"],
        ):
            host.run(argv)
        for argv in (["-6", "addr", "add", f"{web6}/64", "dev", "eth0", "nodad"], ["link", "set", "eth0", "up"]):
            subprocess.run(["ip", "-n", container, *argv], check=True, capture_output=True)
        snap = snapshot(web6)
        allowed = RuleSpec("web", Kind.INPUT, parse_address("."), parse_address("/"), dport=9100)
        rules = render_all([r for r in [*resolve(allowed, snap), *resolve_lock("web", snap, [])] if r.family == 6])
        answer = host.helper("sync", family=6, desired=[dataclasses.asdict(r) for r in rules], scope=None)
        assert answer["ok"], answer
        servers = [subprocess.Popen(["nsenter", f"--net={host.path}", sys.executable, "-c", LISTEN, str(port)])
                   for port in (9100, 9200)]
        try:
            time.sleep(0.5)
            for ns in (host.name, container):
                subprocess.run(["ip", "-n", ns, "-6", "neigh", "flush", "all"], check=True, capture_output=True)
            assert connects(container, "2001:db8:1::1", 9100)
            assert not connects(container, "2001:db8:1::1", 9200)  # the lock still holds
        finally:
            for server in servers:
                server.kill()
                server.wait(timeout=10)
    finally:
        subprocess.run(["ip", "netns", "delete", container], capture_output=True)


LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(5)
s.settimeout(60)
while True:
    c, _ = s.accept()
    c.sendall(b"ok")
    c.close()
"""


def connects(namespace: str, address: str, port: int) -> bool:
    code = f"""
import socket
s = socket.socket(socket.AF_INET6)
s.settimeout(3)
try:
    s.connect(({address!r}, {port}))
    print(s.recv(2).decode())
except OSError as exc:
    print("no", exc)
"""
    done = subprocess.run(["nsenter", f"--net=/var/run/netns/{namespace}", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() == "ok"
