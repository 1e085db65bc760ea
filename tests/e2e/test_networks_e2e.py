"""End to end on user-defined bridge networks, proved with packets.

Networks are created per test (``sandbox.reset()`` removes them again).  The
engine runs with --icc=false, so docker0 blocks traffic between containers;
user-defined networks allow it unless created with
``-o com.docker.network.bridge.enable_icc=false``.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

NO_ICC = ("-o", "com.docker.network.bridge.enable_icc=false")


def network(sandbox, name: str, *options: str) -> str:
    """Create a bridge network; returns its bridge interface (br-<id12>)."""
    network_id = sandbox.docker("network", "create", *options, name).stdout.strip()
    return "br-" + network_id[:12]


def server(sandbox, name: str, network_name: str | None = None, ports=(80,), publish=()) -> None:
    extra = ("--network", network_name) if network_name else ()
    sandbox.run_server(name, ports=ports, publish=publish, extra_args=extra)


def gateway(sandbox, container: str, network_name: str) -> str:
    settings = sandbox.client().api.inspect_container(container)["NetworkSettings"]
    return settings["Networks"][network_name]["Gateway"]


def dnat(sandbox, host_port: int) -> tuple[str, str]:
    """(bridge, destination) of the engine's DNAT rule for a published host port."""
    text = sandbox.engine_run(["iptables", "-t", "nat", "-S", "DOCKER"]).stdout
    for line in text.splitlines():
        words = line.split()
        if "DNAT" in words and f"{host_port}" in words and words[words.index("--dport") + 1] == str(host_port):
            return words[words.index("-i") + 1], words[words.index("--to-destination") + 1]
    raise AssertionError(f"no DNAT rule for port {host_port} in:\n{text}")


def allow_rule_exists(fw, ip: str, bridge: str) -> bool:
    """Whether DOCKER-FW-FORWARD holds an allow rule for ip, from outside bridge."""
    return any(f"-d {ip}/32 ! -i {bridge} -o {bridge} " in l for l in our_rules(fw, "DOCKER-FW-FORWARD"))


def our_rules(fw, chain: str) -> list[str]:
    """Rules with an owner tag (not the shared 'docker-fw:replies' rule)."""
    return [
        l for l in fw.rules_text().splitlines()
        if l.startswith(f"-A {chain} ") and "docker-fw:" in l and "docker-fw:replies" not in l
    ]


def test_allow_on_user_networks_admits_only_the_allowed_client(sandbox, fw):
    zeta = network(sandbox, "zeta")
    alpha = network(sandbox, "alpha")
    server(sandbox, "web", "zeta", publish=(f"{PORT}:80",))
    server(sandbox, "api", "alpha", publish=("8081:80",))
    server(sandbox, "plain", publish=("8082:80",))  # docker0
    server(sandbox, "multi", "alpha")
    sandbox.docker("network", "connect", "zeta", "multi")
    assert dnat(sandbox, PORT) == (zeta, sandbox.container_ip("web", "zeta") + ":80")
    # Docker's default: published ports are open to everyone, on every network.
    for port in (PORT, 8081, 8082):
        assert sandbox.ext_connect(sandbox.host_ip, port, OTHER)

    before = fw.rules_text()
    fw.ok("init")
    saved = fw.rules_text()
    for bridge in ("docker0", zeta, alpha):
        assert fw.catch_all(bridge) in before
        assert fw.catch_all(bridge) not in saved
        assert f"-A FORWARD -i {bridge} -o {bridge} -j DOCKER" in saved
    for port in (PORT, 8081):
        assert not sandbox.ext_connect(sandbox.host_ip, port, ALLOWED)

    fw.ok("allow", "web", ALLOWED)
    assert fw.ok("ls").stdout.splitlines() == [
        f"docker-fw add web --source={ALLOWED} --dest=. --dport=80 --protocol=tcp "
        "--filter='! -i @bridge -o @bridge'"
    ]
    assert allow_rule_exists(fw, sandbox.container_ip("web", "zeta"), zeta)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    # the other containers' published ports stay closed, to the allowed client too
    assert not sandbox.ext_connect(sandbox.host_ip, 8081, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, 8082, ALLOWED)

    # init kept traffic inside icc-enabled user networks open, on both of
    # multi's networks.
    assert fw.container_connects("api", sandbox.container_ip("multi", "alpha"), 80)
    assert fw.container_connects("web", sandbox.container_ip("multi", "zeta"), 80)


def test_add_internal_on_a_network_without_icc(sandbox, fw):
    quiet = network(sandbox, "quiet", *NO_ICC)
    server(sandbox, "srv", "quiet")
    server(sandbox, "client", "quiet", ports=())
    server(sandbox, "stranger", "quiet", ports=())
    srv_ip = sandbox.container_ip("srv", "quiet")
    # Docker's own icc=false rule: in FORWARD on 20.10, in DOCKER-FORWARD on 28.x
    assert re.search(rf"^-A (DOCKER-)?FORWARD -i {quiet} -o {quiet} -j DROP$", fw.rules_text(), re.M)
    assert not fw.container_connects("client", srv_ip, 80)

    fw.ok("init")
    assert not fw.container_connects("client", srv_ip, 80)

    fw.ok("add-internal", "srv", "--source", "client", "--dport", "80")
    client_ip = sandbox.container_ip("client", "quiet")
    assert [l.split(" -m comment")[0] for l in our_rules(fw, "DOCKER-FW-INTERNAL")] == [
        f"-A DOCKER-FW-INTERNAL -s {client_ip}/32 -d {srv_ip}/32 -p tcp -m tcp --dport 80"
    ]
    assert fw.container_connects("client", srv_ip, 80)
    assert not fw.container_connects("stranger", srv_ip, 80)

    fw.ok("drop", "srv")
    assert not fw.container_connects("client", srv_ip, 80)


def test_a_rule_between_containers_sharing_no_network_is_refused(sandbox, fw, tmp_path):
    network(sandbox, "alpha", *NO_ICC)
    network(sandbox, "zeta", *NO_ICC)
    server(sandbox, "srv", "alpha")
    server(sandbox, "peer", "alpha", ports=())
    server(sandbox, "client", "zeta", ports=())
    fw.ok("init")
    fw.ok("add-internal", "srv", "--source", "peer", "--dport", "80")
    rules = fw.rules_text()
    listed = fw.ok("ls").stdout

    result = fw.run("add-internal", "srv", "--source", "client", "--dport", "80")
    assert result.returncode == 3, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "srv (on alpha) and client (on zeta) share no network" in lines[0]
    # the other way round, and inside a --from file next to a good rule
    result = fw.run("add-internal", "client", "--source", ".", "--dest", "srv", "--dport", "80")
    assert result.returncode == 3 and "share no network" in result.stderr, result
    rules_file = tmp_path / "rules"
    rules_file.write_text("srv --source peer --dport 81\nsrv --source client --dport 80\n")
    result = fw.run("add-internal", "--from", str(rules_file))
    assert result.returncode == 3, result
    assert len(result.stderr.strip().splitlines()) == 1 and "line 2" in result.stderr

    assert fw.rules_text() == rules
    assert fw.ok("ls").stdout == listed
    assert not fw.container_connects("client", sandbox.container_ip("srv", "alpha"), 80)
    assert fw.container_connects("peer", sandbox.container_ip("srv", "alpha"), 80)


def test_two_network_container_rules_use_the_shared_networks_addresses(sandbox, fw):
    network(sandbox, "alpha", *NO_ICC)
    network(sandbox, "zeta", *NO_ICC)
    server(sandbox, "multi", "alpha")
    sandbox.docker("network", "connect", "zeta", "multi")
    server(sandbox, "peer_a", "alpha", ports=())
    server(sandbox, "peer_z", "zeta", ports=())
    server(sandbox, "stranger_z", "zeta", ports=())
    multi_a, multi_z = sandbox.container_ip("multi", "alpha"), sandbox.container_ip("multi", "zeta")
    peer_a, peer_z = sandbox.container_ip("peer_a", "alpha"), sandbox.container_ip("peer_z", "zeta")
    fw.ok("init")
    assert not fw.container_connects("peer_z", multi_z, 80)

    # peer_z shares only zeta with multi: one rule, with zeta's addresses
    fw.ok("add-internal", "multi", "--source", "peer_z", "--dport", "80")
    internal = our_rules(fw, "DOCKER-FW-INTERNAL")
    assert len(internal) == 1 and f"-s {peer_z}/32 -d {multi_z}/32 " in internal[0], internal
    assert fw.container_connects("peer_z", multi_z, 80)
    assert not fw.container_connects("stranger_z", multi_z, 80)
    assert not fw.container_connects("peer_a", multi_a, 80)

    fw.ok("add-internal", "multi", "--source", "peer_a", "--dport", "80")
    internal = our_rules(fw, "DOCKER-FW-INTERNAL")
    assert len(internal) == 2 and any(f"-s {peer_a}/32 -d {multi_a}/32 " in l for l in internal), internal
    assert fw.container_connects("peer_a", multi_a, 80)
    assert not fw.container_connects("stranger_z", multi_z, 80)

    # '/' is the gateway of the network the rule is on
    gw_a, gw_z = gateway(sandbox, "multi", "alpha"), gateway(sandbox, "multi", "zeta")
    assert gw_a != gw_z
    with fw.host_server("0.0.0.0", 9000), fw.input_policy_drop():
        assert not fw.container_connects("peer_z", gw_z, 9000)
        fw.ok("add-input", "peer_z", "--source", ".", "--dest", "/", "--dport", "9000")
        inputs = our_rules(fw, "DOCKER-FW-INPUT")
        assert len(inputs) == 1 and f"-s {peer_z}/32 -d {gw_z}/32 " in inputs[0], inputs
        assert fw.container_connects("peer_z", gw_z, 9000)
        assert not fw.container_connects("stranger_z", gw_z, 9000)

        fw.ok("add-input", "multi", "--source", ".", "--dest", "/", "--dport", "9000")
        inputs = our_rules(fw, "DOCKER-FW-INPUT")
        assert any(f"-s {multi_a}/32 -d {gw_a}/32 " in l for l in inputs), inputs
        assert any(f"-s {multi_z}/32 -d {gw_z}/32 " in l for l in inputs), inputs
        assert fw.container_connects("multi", gw_a, 9000)
        assert fw.container_connects("multi", gw_z, 9000)
        assert not fw.container_connects("peer_a", gw_a, 9000)


def test_init_covers_a_network_created_after_it(sandbox, fw):
    alpha = network(sandbox, "alpha")
    server(sandbox, "first", "alpha", publish=(f"{PORT}:80",))
    fw.ok("init")
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)

    late = network(sandbox, "late")
    server(sandbox, "lateweb", "late", publish=("8081:80",))
    assert fw.catch_all(late) in fw.rules_text()
    assert sandbox.ext_connect(sandbox.host_ip, 8081, OTHER)  # open to all: its catch-all
    check = fw.run("check")
    assert check.returncode == 1 and late in check.stdout, check

    out = fw.ok("init").stdout
    assert late in out
    assert alpha not in out and "docker0" not in out  # the others were done already
    saved = fw.rules_text()
    assert fw.catch_all(late) not in saved
    assert f"-A FORWARD -i {late} -o {late} -j DOCKER" in saved
    assert not sandbox.ext_connect(sandbox.host_ip, 8081, OTHER)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)

    again = fw.ok("init")
    assert "nothing changed" in again.stdout
    assert fw.rules_text() == saved
    assert fw.run("check").returncode == 0

    fw.ok("allow", "lateweb", ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, 8081, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, 8081, OTHER)


def test_allow_follows_a_recreated_network(sandbox, fw):
    """docker compose down / up: the project network comes back with a new bridge,
    the container with a new id.  The recorded allow names neither: it follows."""
    first = network(sandbox, "proj_default")
    server(sandbox, "web", "proj_default", publish=(f"{PORT}:80",))
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)

    sandbox.docker("rm", "-f", "web")
    sandbox.docker("network", "rm", "proj_default")
    second = network(sandbox, "proj_default")
    assert second != first
    server(sandbox, "web", "proj_default", publish=(f"{PORT}:80",))
    assert fw.run("check").returncode == 1  # the new bridge's catch-all, web's rule
    out = fw.ok("init").stdout
    assert f"init: -D FORWARD -i {first} -o {first} -j DOCKER  (its network is gone)" in out
    fw.ok("replay")
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert allow_rule_exists(fw, sandbox.container_ip("web", "proj_default"), second)
    assert first not in fw.rules_text()
    assert fw.run("check").returncode == 0


def test_allow_matches_the_bridge_published_ports_are_dnated_to(sandbox, fw):
    zeta = network(sandbox, "zeta")
    alpha = network(sandbox, "alpha")
    network(sandbox, "aaint", "--internal")
    # Created on zeta, then connected to alpha: Docker moves the published
    # port to alpha's bridge (the first network by name).
    server(sandbox, "web", "zeta", publish=(f"{PORT}:80",))
    sandbox.docker("network", "connect", "alpha", "web")
    assert dnat(sandbox, PORT) == (alpha, sandbox.container_ip("web", "alpha") + ":80")
    # On docker0 and an --internal network named before 'bridge': it stays on docker0.
    server(sandbox, "web2", publish=("8081:80",))
    sandbox.docker("network", "connect", "aaint", "web2")
    assert dnat(sandbox, 8081) == ("docker0", sandbox.container_ip("web2", "bridge") + ":80")
    assert zeta != alpha

    fw.ok("init")
    result = fw.ok("allow", "web", ALLOWED)
    assert "has not been run" not in result.stderr  # the internal network needs no init
    assert allow_rule_exists(fw, sandbox.container_ip("web", "alpha"), alpha)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)

    result = fw.ok("allow", "web2", ALLOWED)
    assert "has not been run" not in result.stderr
    assert allow_rule_exists(fw, sandbox.container_ip("web2", "bridge"), "docker0")
    assert sandbox.ext_connect(sandbox.host_ip, 8081, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, 8081, OTHER)


def test_allow_on_a_dual_stack_network_that_is_not_first_by_name(sandbox, fw):
    network(sandbox, "alpha")
    v6net = network(sandbox, "v6net", "--ipv6", "--subnet", "fd00:dfe::/64")
    server(sandbox, "six", "alpha", publish=(f"{PORT}:80",))
    sandbox.docker("network", "connect", "v6net", "six")
    # libnetwork prefers an endpoint with both an IPv4 and an IPv6 gateway
    assert dnat(sandbox, PORT) == (v6net, sandbox.container_ip("six", "v6net") + ":80")

    fw.ok("init")
    fw.ok("allow", "six", ALLOWED)
    assert allow_rule_exists(fw, sandbox.container_ip("six", "v6net"), v6net)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)


def test_add_internal_on_an_internal_network_without_icc(sandbox, fw):
    """An --internal network gets no DOCKER jump from Docker, only its final DROP:
    init still puts the internal jump first, so add-internal rules work there too."""
    vault = network(sandbox, "vault", "--internal", *NO_ICC)
    server(sandbox, "srv", "vault")
    server(sandbox, "client", "vault", ports=())
    server(sandbox, "stranger", "vault", ports=())
    srv_ip = sandbox.container_ip("srv", "vault")
    assert not fw.container_connects("client", srv_ip, 80)

    assert f"-I FORWARD 1 -i {vault} -o {vault} -j DOCKER" in fw.ok("init").stdout
    assert "nothing changed" in fw.ok("init").stdout
    fw.ok("add-internal", "srv", "--source", "client", "--dport", "80")
    assert fw.container_connects("client", srv_ip, 80)
    assert not fw.container_connects("stranger", srv_ip, 80)
    assert fw.run("check").returncode == 0


def test_init_limited_to_one_network(sandbox, fw):
    """init --network zeta: zeta's published ports become a whitelist, docker0's stay
    open (Docker's default), and the choice holds for later runs until --all-networks."""
    zeta = network(sandbox, "zeta")
    server(sandbox, "web", "zeta", publish=(f"{PORT}:80",))
    server(sandbox, "plain", publish=("8082:80",))  # docker0
    bad = fw.run("init", "--network", "nope")
    assert bad.returncode == 2 and "no bridge network named nope" in bad.stderr
    assert "DOCKER-FW" not in fw.rules_text()  # nothing changed

    out = fw.ok("init", "--network", "zeta").stdout
    assert "init: limited to network zeta" in out
    assert fw.catch_all(zeta) not in fw.rules_text() and fw.catch_all("docker0") in fw.rules_text()
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert sandbox.ext_connect(sandbox.host_ip, 8082, OTHER)  # docker0: left as Docker made it
    fw.ok("allow", "web", ALLOWED)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    assert "nothing changed" in fw.ok("init").stdout  # the selection is kept
    assert fw.run("check").returncode == 0

    fw.ok("init", "--all-networks")
    assert not sandbox.ext_connect(sandbox.host_ip, 8082, OTHER)
    assert sandbox.ext_connect(sandbox.host_ip, PORT, ALLOWED)
