"""IPv6, proved with packets: a dual-stack engine (--ipv6 --ip6tables) of its own.

The external namespace reaches the engine host over 2001:db8:ffff::/64 (host
::1, clients ::2 and ::3); web publishes port 80 on 8080, which Docker DNATs
(ip6tables nat) to web's IPv6 address on docker0, so the traffic crosses
ip6tables' FORWARD chain, where docker-fw's whitelist applies.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import SANDBOX_NAME, SYSTEM_ENGINE, engine_id, engines_for, skip_unselected, start_sandbox
from tests.e2e.fw import Fw
from tests.harness.sandbox import Sandbox

V6_ARGS = ["--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64", "--experimental", "--ip6tables"]
HOST6 = Sandbox.host_ip6
ALLOWED6, OTHER6 = Sandbox.ext_ips6
ALLOWED4, OTHER4 = "198.51.100.2", "198.51.100.3"
PORT = 8080


@pytest.fixture(scope="module", params=engines_for(__file__), ids=engine_id)
def sb6(request):
    """A dual-stack engine managing ip6tables: 20.10 (--experimental --ip6tables),
    28.x and 29 (the same flags; --ip6tables is their default): ip6tables layouts differ too."""
    skip_unselected(request.param)
    sb = start_sandbox(request.param, name=f"{SANDBOX_NAME}6-{request.param.split('.')[0]}",
                       extra_daemon_args=V6_ARGS, ext_ipv6=True)
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def fw6(sb6, tmp_path):
    sb6.reset()
    yield Fw(sb6, str(tmp_path / "state"))
    sb6.reset()


def ip6_of(sb, name: str) -> str:
    return sb.client().api.inspect_container(name)["NetworkSettings"]["Networks"]["bridge"]["GlobalIPv6Address"]


def reaches(sb, dst: str, src: str) -> bool:
    return sb.ext_fetch(dst, PORT, src, timeout=1.5) == "web\n"


def soon_reaches(sb, dst: str, src: str, seconds: float = 15) -> bool:
    """reaches(), retried: a container's new IPv6 address is usable only once
    duplicate address detection is over (about a second or two)."""
    deadline = time.monotonic() + seconds
    while True:
        if reaches(sb, dst, src):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


def test_allow_replay_drop_over_ipv6(sb6, fw6):
    sb = sb6
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    first = ip6_of(sb, "web")
    assert first.startswith("2001:db8:1::"), first
    # Docker's default: anyone reaches web's published port, over both families.
    assert soon_reaches(sb, HOST6, ALLOWED6) and reaches(sb, HOST6, OTHER6)
    assert reaches(sb, sb.host_ip, ALLOWED4)

    out = fw6.ok("init").stdout
    assert "(IPv6)" in out, out
    assert not reaches(sb, HOST6, ALLOWED6) and not reaches(sb, HOST6, OTHER6)
    assert not reaches(sb, sb.host_ip, ALLOWED4)

    result = fw6.ok("allow", "web", ALLOWED6)
    assert "warning" not in result.stderr, result.stderr
    assert reaches(sb, HOST6, ALLOWED6)
    assert not reaches(sb, HOST6, OTHER6)
    assert not reaches(sb, sb.host_ip, ALLOWED4)
    saved6 = sb.engine_run(["ip6tables-save", "-t", "filter"]).stdout
    assert f"-s {ALLOWED6}/128 -d {first}/128" in saved6, saved6

    fw6.ok("allow", "web", ALLOWED4)
    assert reaches(sb, sb.host_ip, ALLOWED4) and not reaches(sb, sb.host_ip, OTHER4)
    assert fw6.run("check").returncode == 0

    # web moves: another container takes its old addresses, web gets new ones.
    sb.docker("stop", "-t", "1", "web")
    sb.run_server("squat", ports=(81,))
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    second = ip6_of(sb, "web")
    assert second != first
    assert fw6.run("check").returncode == 1
    fw6.ok("replay", "web")
    assert soon_reaches(sb, HOST6, ALLOWED6) and not reaches(sb, HOST6, OTHER6)
    assert reaches(sb, sb.host_ip, ALLOWED4) and not reaches(sb, sb.host_ip, OTHER4)
    saved6 = sb.engine_run(["ip6tables-save", "-t", "filter"]).stdout
    assert f"-d {second}/128" in saved6 and f"-d {first}/128" not in saved6
    assert fw6.run("check").returncode == 0

    fw6.ok("drop", "web")
    assert not reaches(sb, HOST6, ALLOWED6)
    assert not reaches(sb, sb.host_ip, ALLOWED4)
    assert "docker-fw:web:" not in sb.engine_run(["ip6tables-save", "-t", "filter"]).stdout


def test_explain_over_ipv6_agrees_with_packets(sb6, fw6):
    """explain walks ip6tables (raw, nat, filter) for an IPv6 client: its verdict is what
    a real connection to the published port gets."""
    sb = sb6
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    fw6.ok("init")

    def agree(client: str) -> bool:
        real = soon_reaches(sb, HOST6, client, seconds=3)
        result = fw6.run("explain", "--source", client, "--dest", "web", "--dport", "80", "--json")
        assert result.returncode == (0 if real else 1), (client, real, result)
        doc = json.loads(result.stdout)
        assert doc["paths"][0]["flow"]["family"] == 6 and doc["paths"][0]["flow"]["dst"] == ip6_of(sb, "web")
        return real

    assert not agree(ALLOWED6)
    fw6.ok("allow", "web", ALLOWED6)
    assert agree(ALLOWED6) and not agree(OTHER6)


def soon_connects(fw, name: str, ip: str, port: int, seconds: float = 10) -> bool:
    """Fw.container_connects, retried: new IPv6 addresses are tentative for a second or two."""
    deadline = time.monotonic() + seconds
    while not fw.container_connects(name, ip, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def test_add_internal_over_ipv6_with_icc_off(sb6, fw6):
    """--icc=false (the sandbox's): Docker's '-i docker0 -o docker0 -j DROP' in ip6tables
    also drops the neighbour discovery between two containers; init accepts it above the
    drop (ICMPv6 135/136 only), so an add-internal rule connects over IPv6 and only there."""
    sb = sb6
    sb.run_server("srv", ports=(80, 81))
    sb.run_server("client")
    sb.run_server("stranger")
    srv6 = ip6_of(sb, "srv")
    fw6.ok("init")  # an earlier test of the module may have run it: what counts is what is live
    saved6 = sb.engine_run(["ip6tables-save", "-t", "filter"]).stdout
    for icmp_type in ("135", "136"):
        assert (f"-A FORWARD -i docker0 -o docker0 -p ipv6-icmp -m icmp6 --icmpv6-type {icmp_type} "
                "-m comment --comment docker-fw-nd -j ACCEPT") in saved6, saved6
    saved4 = sb.engine_run(["iptables-save", "-t", "filter"]).stdout
    assert "icmpv6" not in saved4  # IPv4: ARP is not IP, nothing to accept
    assert not fw6.container_connects("client", srv6, 80)
    fw6.ok("add-internal", "srv", "--source", "client", "--dport", "80")
    assert soon_connects(fw6, "client", srv6, 80)
    assert not fw6.container_connects("client", srv6, 81)  # a port no rule admits
    assert not soon_connects(fw6, "stranger", srv6, 80, seconds=2)
    assert fw6.ok("init").stdout == "init: already done, nothing changed\n"
    # (check's status: earlier tests of the module leave rules of theirs behind)
    assert "icmpv6" not in fw6.run("check").stdout
    # removed by hand: a container new to srv (no neighbour entry on either side) cannot
    # connect whatever add-internal admits; check reports it, init puts it back
    for icmp_type in ("135", "136"):
        sb.engine_run(["ip6tables", "-D", "FORWARD", "-i", "docker0", "-o", "docker0", "-p", "ipv6-icmp", "-m",
                       "icmp6", "--icmpv6-type", icmp_type, "-m", "comment", "--comment", "docker-fw-nd", "-j", "ACCEPT"])
    sb.run_server("late")
    fw6.ok("add-internal", "srv", "--source", "late", "--dport", "80")
    assert not soon_connects(fw6, "late", srv6, 80, seconds=3)
    check = fw6.run("check")
    assert check.returncode == 1 and "--icmpv6-type 136" in check.stdout, check
    assert "--icmpv6-type 136" in fw6.ok("init").stdout
    assert soon_connects(fw6, "late", srv6, 80)
    assert "icmpv6" not in fw6.run("check").stdout
    fw6.ok("drop", "srv")  # the next test's store knows nothing of srv's rules


def test_a_v4_only_containers_port_on_every_address_is_warned_about(sb6, fw6):
    """docker-proxy listens on [::] for a container with no IPv6 address and connects to it
    from the host, where no FORWARD rule sees the client: init and check say so, per port."""
    sb = sb6
    sb.docker("network", "create", "v4only")  # no --ipv6: IPv4 only (fw6 resets the engine after)
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--network", "v4only"))
    warning = f"web: port {PORT}/tcp is published on every IPv6 address, but web has no IPv6 address on network v4only"
    assert warning in fw6.ok("init").stderr
    fw6.ok("allow", "web", ALLOWED4)
    assert reaches(sb, sb.host_ip, ALLOWED4) and not reaches(sb, sb.host_ip, OTHER4)
    assert soon_reaches(sb, HOST6, OTHER6)  # the hole: any IPv6 client, through the proxy
    check = fw6.run("check")  # its status: earlier tests of the module leave rules of theirs behind
    assert check.stderr.count(warning) == 1 and warning not in check.stdout, check
    assert json.loads(fw6.run("check", "--json").stdout)["warnings"][0].startswith(warning)
    sb.docker("rm", "-f", "web")  # the first fix: published on IPv4 only
    sb.run_server("web", ports=(80,), publish=(f"0.0.0.0:{PORT}:80",), extra_args=("--network", "v4only"))
    fw6.ok("replay")
    assert reaches(sb, sb.host_ip, ALLOWED4) and not reaches(sb, HOST6, OTHER6)
    assert json.loads(fw6.run("check", "--json").stdout)["warnings"] == []


@pytest.fixture(scope="module")
def sb_no_ip6tables():
    """Containers get IPv6 addresses, but the engine leaves ip6tables alone (no --ip6tables)."""
    sb = start_sandbox(SYSTEM_ENGINE, name=f"{SANDBOX_NAME}6n", extra_daemon_args=V6_ARGS[:3], ext_ipv6=True)
    try:
        yield sb
    finally:
        sb.stop()


def test_engine_without_ip6tables_ipv4_still_works(sb_no_ip6tables, tmp_path):
    sb = sb_no_ip6tables
    fw = Fw(sb, str(tmp_path / "state"))
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    assert ip6_of(sb, "web").startswith("2001:db8:1::")
    assert ":DOCKER " not in sb.engine_run(["ip6tables-save", "-t", "filter"]).stdout
    init = fw.ok("init")
    assert "(IPv6)" not in init.stdout
    assert "IPv6 not initialised: the engine has IPv6 networks but does not manage ip6tables" in init.stderr
    assert not reaches(sb, sb.host_ip, ALLOWED4)
    result = fw.ok("allow", "web", ALLOWED6, ALLOWED4)
    assert result.stderr.count("IPv6 rules not applied: the engine does not manage ip6tables (--ip6tables)") == 1, result.stderr
    assert reaches(sb, sb.host_ip, ALLOWED4) and not reaches(sb, sb.host_ip, OTHER4)
    assert "DOCKER-FW" not in sb.engine_run(["ip6tables-save", "-t", "filter"]).stdout
    fw.ok("drop", "web")
    assert not reaches(sb, sb.host_ip, ALLOWED4)
