"""End to end on Docker 29 in nftables mode: the real engine, the real CLI, real packets.

Two sandboxes, one per icc setting, each started once for the module (Docker
29.7.2 with NFTABLES_ARGS: --firewall-backend=nftables and an accept mark,
dual stack, the external namespace reaching the host over IPv4 and IPv6).
docker-fw is given nothing but DOCKER_HOST: it picks its nftables backend
from what the engine reports ('docker info': FirewallBackend.Driver), and
writes tables ``ip docker-fw`` / ``ip6 docker-fw`` and nothing in iptables.

- icc off (the sandbox's default --icc=false): init, allow, add, --filter
  refused, check (no drift, then drift after tampering), replay --dry-run,
  replay after a move, the stale-address guarantee, drop; add-internal and
  add-two-ways through Docker's ICC drop (the accept mark); add-input with a
  host input chain that drops (it accepts the mark); IPv6; a user network
  created after init (open, reported by check, closed by init again).
- icc on: allow, containers free among themselves, watch following a
  restarted container to its new address and withdrawing a stopped one's
  rules; a v4-only container's port open over IPv6 through docker-proxy (the
  README's warning); then init refusing on an engine with no accept mark, naming the
  dockerd option, and a host moved from iptables to nftables and back (init
  removes what docker-fw left in the other one, replay puts the rules back).

Docker 29 only: the module's fixtures take no other engine (conftest's
``sandbox`` is not used here).
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.e2e.conftest import NFTABLES_ARGS, NFTABLES_FWMARK, SANDBOX_NAME, nft_engine_id, skip_unselected, start_sandbox
from tests.e2e.fw import ALLOWED, OTHER, PORT, Fw
from tests.e2e.test_watch_e2e import Watch, eventually
from tests.harness.sandbox import Sandbox

pytestmark = pytest.mark.e2e

V6_ARGS = ("--ipv6", "--fixed-cidr-v6", "2001:db8:1::/64")
HOST6 = Sandbox.host_ip6
ALLOWED6, OTHER6 = Sandbox.ext_ips6
OUR_TABLES = (("ip", "docker-fw"), ("ip6", "docker-fw"))
HOST_PORT = 9000  # a service on the Docker host that containers may reach (add-input)
MARK_VALUE, MARK_MASK = (int(part, 0) for part in NFTABLES_FWMARK.split("/"))


def _engine(icc: bool, suffix: str):
    skip_unselected("29")
    sb = start_sandbox("29", name=SANDBOX_NAME + suffix, icc=icc, ext_ipv6=True,
                       extra_daemon_args=[*NFTABLES_ARGS, *V6_ARGS])
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module", params=["29"], ids=nft_engine_id)
def engine_icc_off(request):
    yield from _engine(False, "29nf")


@pytest.fixture(scope="module", params=["29"], ids=nft_engine_id)
def engine_icc_on(request):
    yield from _engine(True, "29ni")


def _clean(sb: Sandbox) -> None:
    """No containers, no user networks, none of docker-fw's tables nor a host firewall."""
    sb.reset()
    tables = (*OUR_TABLES, ("inet", "filter"))
    # 'table' makes each one if missing, so that 'delete' never fails
    sb.engine_run(["nft", "-f", "-"], input="".join(f"table {f} {n}\ndelete table {f} {n}\n" for f, n in tables))


def _fw(sb: Sandbox, tmp_path):
    _clean(sb)
    yield Fw(sb, str(tmp_path / "state"))
    _clean(sb)


@pytest.fixture
def off(engine_icc_off, tmp_path):
    yield from _fw(engine_icc_off, tmp_path)


@pytest.fixture
def on(engine_icc_on, tmp_path):
    yield from _fw(engine_icc_on, tmp_path)


# -- helpers -------------------------------------------------------------------


def reaches(sb: Sandbox, src: str, dst: str | None = None) -> bool:
    """Whether the external client SRC gets web's answer from the published port."""
    return sb.ext_fetch(dst or sb.host_ip, PORT, src, timeout=1) == "web\n"


def soon_reaches(sb: Sandbox, src: str, dst: str, seconds: float = 15) -> bool:
    """reaches(), retried: a new IPv6 address is usable once duplicate address detection is over."""
    deadline = time.monotonic() + seconds
    while not reaches(sb, src, dst):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def ours(sb: Sandbox) -> str:
    """docker-fw's tables as nft lists them ('' for a table that does not exist)."""
    listings = [sb.engine_run(["nft", "list", "table", f, n], check=False).stdout for f, n in OUR_TABLES]
    return "\n".join(listings)


def handle_of(sb: Sandbox, chain: str, needle: str | None) -> str:
    """The handle of the rule of ``ip docker-fw`` CHAIN whose comment holds NEEDLE
    (None: the first rule with no comment)."""
    listing = json.loads(sb.engine_run(["nft", "-j", "list", "chain", "ip", "docker-fw", chain]).stdout)
    rules = [o["rule"] for o in listing["nftables"] if "rule" in o]
    return next(str(r["handle"]) for r in rules if (needle in r.get("comment", "") if needle else "comment" not in r))


def connects(sb: Sandbox, name: str, dest: str, port: int) -> bool:
    """Whether container NAME opens a TCP connection to DEST:PORT and reads a reply
    (Fw.container_connects, with a 1-second connect timeout: the sandbox's links are local)."""
    result = sb.docker("exec", name, "sh", "-c", f"nc -w 1 {dest} {port} </dev/null", check=False)
    return result.returncode == 0 and result.stdout.strip() != ""


def soon_connects(sb: Sandbox, name: str, dest: str, port: int, seconds: float = 10) -> bool:
    """connects(), retried: a new IPv6 address is tentative for a second or two."""
    deadline = time.monotonic() + seconds
    while not connects(sb, name, dest, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def ip6_of(sb: Sandbox, name: str) -> str:
    return sb.client().api.inspect_container(name)["NetworkSettings"]["Networks"]["bridge"]["GlobalIPv6Address"]


def run_web(sb: Sandbox) -> None:
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))


# -- icc off --------------------------------------------------------------------


def test_the_backend_is_chosen_from_the_engine_and_init_closes_published_ports(off):
    sb, fw = off.sandbox, off
    assert sb.client().info()["FirewallBackend"]["Driver"] == "nftables"
    run_web(sb)
    assert reaches(sb, ALLOWED) and reaches(sb, OTHER)  # Docker's default: open to all
    assert soon_reaches(sb, OTHER6, HOST6)
    out = fw.ok("init").stdout
    assert 'init: add rule ip docker-fw fw-init oifname "docker0"' in out, out
    assert 'init: add rule ip6 docker-fw fw-init oifname "docker0"' in out, out  # dual stack: both families
    assert not reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    assert not reaches(sb, ALLOWED6, HOST6)
    assert "DOCKER-FW" not in sb.iptables_save()  # the nftables backend, not iptables
    before = ours(sb)
    assert fw.ok("init").stdout == "init: already done, nothing changed\n"
    assert ours(sb) == before
    # raw iptables matches cannot be written in nftables: refused, one line, nothing changed
    refused = fw.run("add", "web", "--source", OTHER, "--dport", "80", "--filter", "-m conntrack --ctstate NEW")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused
    assert "cannot be expressed on the nftables backend" in refused.stderr
    assert ours(sb) == before and fw.ok("ls").stdout == ""


def test_allow_add_check_tampering_replay_and_drop(off):
    sb, fw = off.sandbox, off
    run_web(sb)
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    assert fw.ok("ls").stdout.splitlines() == [
        f"docker-fw add web --source={ALLOWED} --dest=. --dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'"
    ]
    assert f"ip saddr {ALLOWED} ip daddr {sb.container_ip('web')}" in ours(sb)
    fw.ok("add", "web", "--source", "198.51.100.4", "--dport", "80")
    assert fw.ok("check").stdout == "check: no drift\n"
    assert fw.ok("replay", "--dry-run").stdout == "replay: nothing to change\n"

    # tampering: our rule deleted, a foreign one added to our table
    sb.engine_run(["nft", "delete", "rule", "ip", "docker-fw", "fw-forward", "handle",
                   handle_of(sb, "fw-forward", "docker-fw:web:")])
    sb.engine_run(["nft", "add", "rule", "ip", "docker-fw", "fw-forward", "ip", "saddr", OTHER, "accept"])
    check = fw.run("check")
    assert check.returncode == 1, check
    assert any(line.startswith("missing (web): add rule ip docker-fw fw-forward") for line in check.stdout.splitlines())
    assert "foreign rule in ip docker-fw fw-forward" in check.stdout
    dry = fw.run("replay", "--dry-run")
    assert dry.returncode == 1 and "would add" in dry.stdout, dry
    fw.ok("replay")
    assert reaches(sb, ALLOWED)
    # an accept in docker-fw's chain skips init's drop: the foreign rule opens, and check
    # says so (exit 1) until someone removes it (docker-fw deletes only rules it wrote)
    assert reaches(sb, OTHER)
    assert "foreign rule" in fw.run("check").stdout
    sb.engine_run(["nft", "delete", "rule", "ip", "docker-fw", "fw-forward", "handle", handle_of(sb, "fw-forward", None)])
    assert fw.ok("check").stdout == "check: no drift\n"
    assert not reaches(sb, OTHER)

    assert "web: dropped 2 rules" in fw.ok("drop", "web").stdout
    assert not reaches(sb, ALLOWED)
    assert fw.ok("ls").stdout == "" and "docker-fw:web:" not in ours(sb)


def test_replay_follows_a_moved_container_and_withdraws_a_stopped_ones_rules(off):
    sb, fw = off.sandbox, off
    run_web(sb)
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    old_ip, new_ip = sb.move("web")  # a squatter holds web's old address
    assert not reaches(sb, ALLOWED)
    dry = fw.run("replay", "--dry-run", "web")
    assert dry.returncode == 1 and "would delete" in dry.stdout and "would add" in dry.stdout, dry
    fw.ok("replay", "web")
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    assert f"ip daddr {old_ip} " not in ours(sb) and f"ip daddr {new_ip} " in ours(sb)
    assert fw.ok("replay", "--dry-run").stdout == "replay: nothing to change\n"

    # web stops: its rules are withdrawn, so whoever gets its address next is not admitted
    sb.docker("stop", "-t", "1", "web")
    result = fw.ok("replay")
    assert "not applied" in result.stderr and "docker-fw:web:" not in ours(sb)
    sb.run_server("stranger", ports=(80,), publish=(f"{PORT}:80",))
    assert sb.container_ip("stranger") == new_ip
    assert sb.ext_fetch(sb.host_ip, PORT, ALLOWED, timeout=1) is None  # not "stranger\n"
    sb.docker("rm", "-f", "stranger")
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    fw.ok("replay", "web")  # the record was kept
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)


def test_add_internal_and_add_two_ways_pass_dockers_icc_drop_with_the_accept_mark(off):
    sb, fw = off.sandbox, off
    fw.ok("init")
    for name, ports in (("srv", (80, 81)), ("client", ()), ("stranger", ())):
        sb.run_server(name, ports=ports)
    srv4 = sb.container_ip("srv")
    assert not connects(sb, "client", srv4, 80)  # --icc=false
    fw.ok("add-internal", "srv", "--source", "client", "--dport", "80")
    assert "meta mark set" in ours(sb)
    assert connects(sb, "client", srv4, 80)
    assert not connects(sb, "stranger", srv4, 80)
    # A rule naming containers is written for both families.  Over IPv6, Docker's ICC drop
    # also drops the neighbour discovery between the two containers (ARP is not IP: IPv4
    # has no such problem); init marks it (fw-init), so Docker accepts it above that drop.
    srv6 = ip6_of(sb, "srv")
    assert f"ip6 saddr {ip6_of(sb, 'client')} ip6 daddr {srv6} tcp dport 80 meta mark set" in ours(sb)
    assert "docker-fw-nd:" in ours(sb).split("table ip6 docker-fw", 1)[1]
    assert soon_connects(sb, "client", srv6, 80)
    assert not connects(sb, "client", srv6, 81)  # a port no rule admits
    assert not soon_connects(sb, "stranger", srv6, 80, seconds=2)

    sb.run_server("endpoint", ports=(1025,))
    sb.run_server("promoted", ports=())
    assert not connects(sb, "promoted", sb.container_ip("endpoint"), 1025)
    fw.ok("add-two-ways", "endpoint", "--source", "promoted", "--dport", "1025")
    assert connects(sb, "promoted", "endpoint", 1025)  # by name: the hosts line
    assert not connects(sb, "stranger", sb.container_ip("endpoint"), 1025)
    assert fw.ok("check").stdout == "check: no drift\n"


def test_add_input_picks_the_containers_a_host_input_drop_admits_by_the_mark(off):
    sb, fw = off.sandbox, off
    # The host's own firewall: input policy drop, and what carries the accept mark admitted
    sb.engine_run(["nft", "-f", "-"], input=(
        "table inet filter {\n  chain input {\n    type filter hook input priority filter; policy drop;\n"
        '    ct state established,related accept\n    iif "lo" accept\n'
        f"    meta mark & {MARK_MASK:#x} == {MARK_VALUE:#x} accept\n  }}\n}}\n"
    ))
    fw.ok("init")
    sb.run_server("client", ports=())
    sb.run_server("stranger", ports=())
    gateway = fw.gateway("client")
    with fw.host_server(gateway, HOST_PORT):
        assert not connects(sb, "client", gateway, HOST_PORT)
        fw.ok("add-input", "client", "--source", ".", "--dest", "/", "--dport", str(HOST_PORT))
        assert connects(sb, "client", gateway, HOST_PORT)
        assert not connects(sb, "stranger", gateway, HOST_PORT)
        fw.ok("drop", "client")
        assert not connects(sb, "client", gateway, HOST_PORT)


def test_ipv6_rules_on_a_dual_stack_network(off):
    sb, fw = off.sandbox, off
    run_web(sb)
    assert ip6_of(sb, "web").startswith("2001:db8:1::")
    assert soon_reaches(sb, ALLOWED6, HOST6)
    fw.ok("init")
    assert not reaches(sb, ALLOWED6, HOST6) and not reaches(sb, OTHER6, HOST6)
    fw.ok("allow", "web", ALLOWED6)
    assert reaches(sb, ALLOWED6, HOST6) and not reaches(sb, OTHER6, HOST6)
    assert not reaches(sb, ALLOWED)  # an IPv6 source: the ip6 table only
    assert ALLOWED6 in ours(sb).split("table ip6 docker-fw", 1)[1]
    fw.ok("allow", "web", ALLOWED)
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    old6 = ip6_of(sb, "web")
    sb.move("web")
    fw.ok("replay")
    assert soon_reaches(sb, ALLOWED6, HOST6) and not reaches(sb, OTHER6, HOST6)
    assert old6 not in ours(sb) and ip6_of(sb, "web") in ours(sb)
    fw.ok("drop", "web")
    assert not reaches(sb, ALLOWED6, HOST6) and not reaches(sb, ALLOWED)

    # Between containers (icc off): init's neighbour-discovery mark is what lets an IPv6
    # add-internal rule connect.  Deleted by hand, a container new to web (no neighbour
    # entry on either side) cannot; check reports it; init puts it back.
    sb.run_server("late")
    fw.ok("add-internal", "web", "--source", "late", "--dport", "80")
    web6 = ip6_of(sb, "web")
    listing = json.loads(sb.engine_run(["nft", "-j", "list", "chain", "ip6", "docker-fw", "fw-init"]).stdout)
    (mark,) = [str(o["rule"]["handle"]) for o in listing["nftables"]
               if "docker-fw-nd:" in o.get("rule", {}).get("comment", "")]
    sb.engine_run(["nft", "delete", "rule", "ip6", "docker-fw", "fw-init", "handle", mark])
    assert not soon_connects(sb, "late", web6, 80, seconds=3)
    assert connects(sb, "late", sb.container_ip("web"), 80)  # IPv4 needs no mark: ARP is not IP
    check = fw.run("check")
    assert check.returncode == 1 and "docker-fw-nd:" in check.stdout, check
    assert "docker-fw-nd:" in fw.ok("init").stdout
    assert soon_connects(sb, "late", web6, 80)
    assert fw.ok("check").stdout == "check: no drift\n"


def test_a_user_network_created_after_init_is_open_until_init_covers_it(off):
    sb, fw = off.sandbox, off
    fw.ok("init")
    sb.docker("network", "create", "appnet")
    bridge = "br-" + sb.client().api.inspect_network("appnet")["Id"][:12]
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--network", "appnet"))
    assert reaches(sb, OTHER)  # Docker's default on the new bridge
    check = fw.run("check")
    assert check.returncode == 1 and f'oifname "{bridge}"' in check.stdout, check
    assert f'docker-fw-init:{bridge}' in fw.ok("init").stdout
    assert not reaches(sb, OTHER) and not reaches(sb, ALLOWED)
    fw.ok("allow", "web", ALLOWED)  # '! -i @bridge -o @bridge': appnet's bridge
    assert f'iifname != "{bridge}" oifname "{bridge}"' in ours(sb)
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    assert fw.ok("check").stdout == "check: no drift\n"


# -- icc on ----------------------------------------------------------------------


def test_icc_on_allow_and_watch_following_a_restarted_container(on, tmp_path):
    sb, fw = on.sandbox, on
    run_web(sb)
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    # icc on: containers reach each other with no rule (init closes the bridge to outside only)
    sb.run_server("client", ports=())
    assert connects(sb, "client", sb.container_ip("web"), 80)

    watch = Watch(sb, fw, tmp_path / "watch.log").start()
    try:
        old_ip, new_ip = sb.move("web")
        assert eventually(lambda: reaches(sb, ALLOWED), timeout=15), watch.text()
        assert not reaches(sb, OTHER)
        assert f"ip daddr {old_ip} " not in ours(sb) and f"ip daddr {new_ip} " in ours(sb)
        # web stops: watch withdraws its rules; a stranger at its address is not admitted
        sb.docker("stop", "-t", "1", "web")
        assert eventually(lambda: "docker-fw:web:" not in ours(sb)), watch.text()
        sb.run_server("stranger", ports=(80,), publish=(f"{PORT}:80",))
        assert sb.container_ip("stranger") == new_ip
        assert sb.ext_fetch(sb.host_ip, PORT, ALLOWED, timeout=1) is None
        assert fw.ok("check").stdout.endswith("check: no drift\n")  # after "not applied (... exited ...)"
    finally:
        watch.stop()


def test_a_v4_only_containers_port_stays_open_over_ipv6_through_docker_proxy(on):
    """What the README warns about (IPv6): docker-proxy listens on [::] for a container
    with no IPv6 address and connects to it from the host, where no forward rule sees
    the client.  If this ever fails, Docker or docker-fw closed the hole: say so there."""
    sb, fw = on.sandbox, on
    sb.docker("network", "create", "v4only")  # user networks get IPv6 only with --ipv6
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",), extra_args=("--network", "v4only"))
    warning = f"web: port {PORT}/tcp is published on every IPv6 address, but web has no IPv6 address on network v4only"
    assert warning in fw.ok("init").stderr
    fw.ok("allow", "web", ALLOWED)
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
    assert soon_reaches(sb, OTHER6, HOST6)  # any IPv6 client, through the userland proxy
    # check and init name it (docker-fw cannot close it: no rule sees the client); not drift
    check = fw.ok("check")
    assert check.stdout == "check: no drift\n" and check.stderr.count(warning) == 1, check
    doc = json.loads(fw.ok("check", "--json").stdout)
    assert doc["drift"] is False and len(doc["warnings"]) == 1 and doc["warnings"][0].startswith(warning), doc
    # published on IPv4 only, the port is no longer open over IPv6, and nothing is warned about
    sb.docker("rm", "-f", "web")
    sb.run_server("web", ports=(80,), publish=(f"0.0.0.0:{PORT}:80",), extra_args=("--network", "v4only"))
    fw.ok("replay")
    assert reaches(sb, ALLOWED) and not reaches(sb, OTHER6, HOST6)
    assert json.loads(fw.ok("check", "--json").stdout)["warnings"] == []


def _switch(sb: Sandbox, backend: str, mark: bool = True) -> None:
    """Restart the engine on another firewall backend, as an admin would (its
    containers stop).  For iptables, forwarding is turned off first, as on a host
    fresh from a reboot: Docker then turns it on and sets FORWARD's policy to DROP."""
    sb.stop_engine()
    if backend == "nftables":
        sb.extra_daemon_args = [*(NFTABLES_ARGS if mark else NFTABLES_ARGS[:1]), *V6_ARGS]
        forwarding = "1"  # Docker's nftables backend does not turn it on
    else:
        sb.extra_daemon_args = [*V6_ARGS]
        forwarding = "0"
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        sb.engine_run([sys.executable, "-S", "-c", f"open({path!r}, 'w').write('{forwarding}')"])
    sb.start_engine()
    assert sb.client().info()["FirewallBackend"]["Driver"] == backend


def _start_web(sb: Sandbox) -> None:
    sb.docker("start", "web")
    sb.wait_listening("web", 80)


def test_moving_the_host_from_iptables_to_nftables_and_back(on):
    sb, fw = on.sandbox, on
    try:
        # rules recorded while the engine runs its iptables backend
        _switch(sb, "iptables")
        run_web(sb)
        fw.ok("init")
        fw.ok("allow", "web", ALLOWED)
        assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
        assert "-A FORWARD -j DOCKER-FW-FORWARD" in sb.iptables_save("filter")
        assert fw.ok("check").stdout == "check: no drift\n"

        # nftables, but no accept mark: init refuses, naming the option, and changes nothing
        _switch(sb, "nftables", mark=False)
        _start_web(sb)
        saved = fw.rules_text()
        refused = fw.run("init")
        assert refused.returncode == 4 and len(refused.stderr.splitlines()) == 1, refused
        assert "--bridge-accept-fwmark" in refused.stderr and "nothing was changed" in refused.stderr
        assert not set(OUR_TABLES) & sb.nft_tables() and fw.rules_text() == saved

        # with the mark: init closes, removes docker-fw's iptables chains, warns about FORWARD's DROP
        _switch(sb, "nftables")
        _start_web(sb)
        init = fw.ok("init")
        assert "(left from the engine's iptables backend)" in init.stdout, init.stdout
        assert "FORWARD policy is DROP" in init.stderr, init.stderr
        assert "DOCKER-FW" not in sb.iptables_save("filter")
        sb.engine_run(["iptables", "-P", "FORWARD", "ACCEPT"])  # as the warning says (Docker's docs too)
        assert not reaches(sb, ALLOWED) and not reaches(sb, OTHER)  # closed until replayed
        fw.ok("replay")
        assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
        assert fw.ok("check").stdout == "check: no drift\n"

        # and back: init deletes docker-fw's nftables tables, replay writes iptables again
        _switch(sb, "iptables")
        _start_web(sb)
        init = fw.ok("init")
        assert "init: delete table ip docker-fw  (left from the engine's nftables backend)" in init.stdout, init.stdout
        assert not set(OUR_TABLES) & sb.nft_tables()
        fw.ok("replay")
        assert reaches(sb, ALLOWED) and not reaches(sb, OTHER)
        assert fw.ok("check").stdout == "check: no drift\n"
    finally:
        _switch(sb, "nftables")  # the module's engine as it was (less its containers)
        for command in ("iptables", "ip6tables"):
            sb.engine_run([command, "-P", "FORWARD", "ACCEPT"])
