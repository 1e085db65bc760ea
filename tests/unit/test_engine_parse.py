"""engine: turning the engine's list answers into a Snapshot (no engine involved)."""

from __future__ import annotations

import ipaddress

import pytest

from docker_fw.engine import Snapshot, parse_container, parse_network
from docker_fw.errors import EngineError

NETWORKS = [
    {
        "Id": "f" * 64,
        "Name": "bridge",
        "Driver": "bridge",
        "Options": {"com.docker.network.bridge.name": "docker0"},
        "IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
    },
    {
        "Id": "0123456789abcdef" * 4,
        "Name": "appnet",
        "Driver": "bridge",
        "Options": {},
        "IPAM": {"Config": [{"Subnet": "fd00::/64", "Gateway": "fd00::1"}, {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]},
    },
    {"Id": "e" * 64, "Name": "host", "Driver": "host", "Options": {}, "IPAM": {"Config": []}},
    {"Id": "d" * 64, "Name": "none", "Driver": "null", "IPAM": None},
]


def summary(cid, names, state, networks, ports=()):
    return {
        "Id": cid,
        "Names": names,
        "State": state,
        "NetworkSettings": {"Networks": networks},
        "Ports": list(ports),
    }


@pytest.fixture
def snap() -> Snapshot:
    nets = [parse_network(n) for n in NETWORKS]
    by_name = {n.name: n for n in nets}
    raw = [
        summary(
            "a1" * 32,
            ["/web"],
            "running",
            {
                "bridge": {"IPAddress": "172.17.0.2", "Gateway": "172.17.0.1"},
                "appnet": {"IPAddress": "172.18.0.2", "Gateway": ""},
            },
            [
                {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "0.0.0.0"},
                {"PrivatePort": 443, "Type": "tcp"},  # exposed, not published
            ],
        ),
        summary("b2" * 32, ["/other/db", "/db"], "running", {"appnet": {"IPAddress": "172.18.0.3"}}),
        summary("c3" * 32, ["/old"], "exited", {"bridge": {"IPAddress": ""}}),
        summary("c3c" + "0" * 61, ["/sleepy"], "paused", {"bridge": {"IPAddress": "172.17.0.5", "Gateway": "172.17.0.1"}}),
    ]
    return Snapshot(containers=[parse_container(s, by_name) for s in raw], networks=nets)


def test_parse_network_bridge_names_and_ipv4_only():
    bridge, app, host, none = (parse_network(n) for n in NETWORKS)
    assert (bridge.bridge, bridge.gateway, bridge.subnets) == ("docker0", "172.17.0.1", (ipaddress.IPv4Network("172.17.0.0/16"),))
    assert app.bridge == "br-0123456789ab"
    assert app.subnets == (ipaddress.IPv4Network("172.18.0.0/16"),)
    assert app.gateway == "172.18.0.1"
    assert host.bridge == "" and none.bridge == "" and none.subnets == ()


def test_bridges(snap):
    assert [n.bridge for n in snap.bridges()] == ["docker0", "br-0123456789ab"]


def test_parse_container(snap):
    web = snap.get("web")
    assert [(e.network, e.bridge, e.ip, e.gateway) for e in web.endpoints] == [
        ("appnet", "br-0123456789ab", "172.18.0.2", "172.18.0.1"),  # gateway from the network
        ("bridge", "docker0", "172.17.0.2", "172.17.0.1"),
    ]
    assert [(p.private_port, p.host_port, p.proto) for p in web.ports] == [(80, 8080, "tcp")]
    assert snap.get("db").name == "db"  # not the legacy link alias /other/db
    assert snap.get("old").endpoints == ()


def test_find_by_name_id_and_prefix(snap):
    assert snap.find("/web").name == "web"
    assert snap.find("b2" * 32).name == "db"
    assert snap.find("b2b2b2").name == "db"
    assert snap.find("nobody") is None
    with pytest.raises(EngineError, match="ambiguous"):
        snap.find("c3c")  # old (c3c3...) and sleepy (c3c0...)
    assert snap.find("c3c3").name == "old"
    with pytest.raises(EngineError, match="no such container: ghost"):
        snap.get("ghost")


def test_running(snap):
    assert snap.running("sleepy").state == "paused"  # paused containers keep their address
    with pytest.raises(EngineError, match="old is exited"):
        snap.running("old")


def test_addresses(snap):
    assert snap.owner_of_address("172.18.0.3").name == "db"
    assert snap.owner_of_address("172.17.0.99") is None
    assert snap.is_docker_address(ipaddress.IPv4Network("172.17.0.99/32"))
    assert snap.is_docker_address(ipaddress.IPv4Network("172.18.4.0/24"))
    assert not snap.is_docker_address(ipaddress.IPv4Network("172.16.0.0/12"))
    assert not snap.is_docker_address(ipaddress.IPv4Network("203.0.113.1/32"))


def test_the_labels_docker_fw_reads_and_no_others():
    labels = {
        "docker-fw.rules": "allow 198.51.100.2\n", "com.docker.compose.project": "shop",
        "com.docker.compose.service": "web", "com.docker.compose.container-number": "1", "other": "x" * 1000,
    }
    raw = {**summary("a" * 64, ["/shop-web-1"], "running", {}), "Labels": labels}
    container = parse_container(raw, {})
    assert dict(container.labels) == {k: v for k, v in labels.items() if k.startswith(("docker-fw.", "com.docker.compose.p", "com.docker.compose.s"))}
    assert container.label("docker-fw.rules") == "allow 198.51.100.2\n"
    assert container.label("other") is None
    # whatever an engine sends there that is not text is not a label
    for odd in (None, [], "rules", {"docker-fw.rules": 7}):
        assert parse_container({**raw, "Labels": odd}, {}).labels == ()


@pytest.mark.parametrize(
    "options, icc",
    [({}, True), ({"com.docker.network.bridge.enable_icc": "true"}, True),
     ({"com.docker.network.bridge.enable_icc": "false"}, False), (None, True)],
)
def test_a_networks_icc_comes_from_its_enable_icc_option(options, icc):
    assert parse_network({**NETWORKS[1], "Options": options}).icc is icc
