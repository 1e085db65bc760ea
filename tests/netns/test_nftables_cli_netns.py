"""docker-fw's commands on the nftables backend, proved with packets (nft_world).

cli.run with a stand-in engine (the only stand-in: it declares
service.core.EngineView and reports Docker's nftables firewall backend,
so backends.choice picks the nftables backend); 'nft' on PATH is the real
nft run inside the world's host namespace.
"""

from __future__ import annotations

import ipaddress
import json
import shutil

import pytest

from nft_world import world  # noqa: F401 (a fixture)
from docker_fw import cli
from docker_fw.engine import Container, Endpoint, Network, PortBinding, Snapshot
from docker_fw.service.core import EngineView

pytestmark = pytest.mark.netns

BRIDGE = Network(
    "f" * 64, "bridge", "bridge", "docker0", (ipaddress.IPv4Network("172.17.0.0/16"),), "172.17.0.1",
    subnets6=(ipaddress.IPv6Network("fd00:17::/64"),), gateway6="fd00:17::1",
    icc=False,  # the world is Docker 29 with --icc=false (nft_world.DOCKER_LIKE)
)


class NftablesEngine(EngineView):
    """An engine in Docker 29's nftables mode, with web (publishing 80) and db on docker0."""

    def __init__(self):
        self.addresses = {"web": ("172.17.0.2", "fd00:17::2"), "db": ("172.17.0.3", "fd00:17::3")}
        self.running = {"web", "db"}

    def snapshot(self, refresh: bool = False) -> Snapshot:
        containers = []
        for name, (ip, ip6) in sorted(self.addresses.items()):
            up = name in self.running
            endpoints = (Endpoint("bridge", "docker0", ip, "172.17.0.1", "fd00:17::1", ip6=ip6),) if up else ()
            ports = (PortBinding(80, "tcp", "0.0.0.0", 8080),) if up and name == "web" else ()
            containers.append(Container(name.encode().hex().ljust(64, "0"), name, "running" if up else "exited", endpoints, ports))
        return Snapshot(containers=containers, networks=[BRIDGE])

    def firewall_backend(self) -> str:
        return "nftables"

    def inspect(self, ref: str) -> dict:
        """What egress reads of a container: its resolv.conf (one name server, in ext)."""
        return {"HostConfig": {"Dns": []}, "ResolvConfPath": self.resolv_conf}

    def start(self, container_id: str, port_bindings: dict | None = None) -> None:
        raise AssertionError("not asked by these commands")

    def pause(self, container_id: str) -> None:
        raise AssertionError("not asked by these commands")

    def accepts_start_with_hostconfig(self) -> bool:
        return False


@pytest.fixture
def fw(world, tmp_path, monkeypatch):
    """docker-fw ARGS -> (exit code, stdout lines, stderr lines)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(world.wrapper, bin_dir / "nft")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "state"))
    engine = NftablesEngine()
    engine.resolv_conf = str(tmp_path / "resolv.conf")
    (tmp_path / "resolv.conf").write_text("nameserver 198.51.100.3\n")

    def run(*args: str):
        out, err = [], []
        code = cli.run(list(args), out=out.append, err=err.append, backends=lambda verbose: (engine, None, None))
        return code, out, err

    run.engine = engine
    run.world = world
    return run


def test_the_readme_scenario_on_nftables(fw):
    world = fw.world
    assert world.reaches("ext", "198.51.100.2", "172.17.0.2", 80)
    code, out, _ = fw("init")
    assert code == 0 and any("docker-fw-init:docker0" in line for line in out)
    assert fw("init")[1] == ["init: already done, nothing changed"]
    assert not world.reaches("ext", "198.51.100.2", "172.17.0.2", 80)
    assert fw("allow", "web", "198.51.100.2")[0] == 0
    assert world.reaches("ext", "198.51.100.2", "172.17.0.2", 80)
    assert not world.reaches("ext", "198.51.100.3", "172.17.0.2", 80)
    assert world.reaches("ext", "2001:db8:51::2", "fd00:17::2", 80) is False  # an IPv4 address: IPv4 only
    assert fw("add-internal", "web", "--source", "db", "--dport", "5432")[0] == 0
    assert world.reaches("db", "172.17.0.3", "172.17.0.2", 5432)  # icc off, the accept mark
    assert world.reaches("db", "fd00:17::3", "fd00:17::2", 5432)  # and over IPv6: both families
    assert fw("ls", "web")[1] == [
        "docker-fw add web --source=198.51.100.2 --dest=. --dport=80 --protocol=tcp --filter='! -i @bridge -o @bridge'",
        "docker-fw add-internal web --source=db --dest=. --dport=5432 --protocol=tcp",
    ]
    assert fw("check") == (0, ["check: no drift"], [])
    assert fw("replay", "--dry-run") == (0, ["replay: nothing to change"], [])

    # web restarts at another address: stale until replayed, then withdrawn from the old one
    fw.engine.addresses["web"] = ("172.17.0.9", "fd00:17::9")
    code, out, _ = fw("check")
    assert code == 1 and any(line.startswith("stale (web): ") for line in out) and any(line.startswith("missing (web): ") for line in out)
    code, out, _ = fw("replay", "--dry-run")
    assert code == 1 and any(line.startswith("would delete (web)") for line in out)
    assert fw("replay")[1] == ["replay: 3 rule(s) added, 3 removed"]
    assert "172.17.0.2" not in world.listing() and "172.17.0.9" in world.listing()

    # a stopped container's rules are withdrawn: its address may be the next one's
    fw.engine.running.discard("web")
    code, out, err = fw("replay")
    assert code == 0 and out == ["replay: 0 rule(s) added, 3 removed"]
    assert "docker-fw:web:" not in world.listing() + world.listing("ip6")

    fw.engine.running.add("web")
    fw.engine.addresses["web"] = ("172.17.0.2", "fd00:17::2")
    assert fw("replay")[0] == 0
    assert world.reaches("ext", "198.51.100.2", "172.17.0.2", 80)
    assert fw("drop", "web")[1] == ["web: dropped 2 rules"]
    assert not world.reaches("ext", "198.51.100.2", "172.17.0.2", 80)
    assert not world.reaches("db", "172.17.0.3", "172.17.0.2", 5432)
    assert fw("check") == (0, ["check: no drift"], [])


def test_filter_matches_are_refused_on_nftables(fw):
    before = fw.world.listing()
    code, out, err = fw("add", "web", "--source", "198.51.100.2", "--dport", "80", "--filter", "-m conntrack --ctstate NEW")
    assert code == 2 and out == [] and len(err) == 1
    assert "'-m' cannot be expressed on the nftables backend" in err[0]
    assert fw.world.listing() == before
    assert fw("ls")[1] == []
    # interface matches (what 'allow' records) are expressed as iifname/oifname
    assert fw("add", "web", "--source", "198.51.100.2", "--dport", "80", "--filter", "! -i eth+")[0] == 0
    assert 'iifname != "eth*"' in fw.world.listing()


def test_check_reports_init_undone_and_replay_repairs_a_flush(fw):
    assert fw("init")[0] == 0 and fw("allow", "web", "198.51.100.2")[0] == 0
    fw.world.run("host", "nft", "flush", "table", "ip", "docker-fw")  # e.g. a firewall reload
    assert fw.world.reaches("ext", "198.51.100.3", "172.17.0.2", 80)
    code, out, _ = fw("check")
    assert code == 1 and any(line.startswith("not initialised (init): would add") for line in out)
    assert any(line.startswith("missing (web): add rule ip docker-fw fw-forward") for line in out)
    assert fw("replay")[0] == 0 and fw("init")[0] == 0
    assert not fw.world.reaches("ext", "198.51.100.3", "172.17.0.2", 80)
    assert fw.world.reaches("ext", "198.51.100.2", "172.17.0.2", 80)
    assert fw("check") == (0, ["check: no drift"], [])


def test_init_says_it_put_back_a_flushed_base_chain(fw):
    assert fw("init")[0] == 0 and fw("allow", "web", "198.51.100.2")[0] == 0
    fw.world.run("host", "nft", "flush", "chain", "ip", "docker-fw", "forward")  # init's drops unreachable
    assert fw.world.reaches("ext", "198.51.100.3", "172.17.0.2", 80)
    code, out, _ = fw("init")
    assert code == 0 and out == [
        "init: add rule ip docker-fw forward jump fw-egress",
        "init: add rule ip docker-fw forward jump fw-forward",
        "init: add rule ip docker-fw forward jump fw-internal",
        "init: add rule ip docker-fw forward jump fw-init",
    ]
    assert not fw.world.reaches("ext", "198.51.100.3", "172.17.0.2", 80)
    assert fw("init")[1] == ["init: already done, nothing changed"]


def test_init_without_the_accept_mark_names_the_option(fw):
    world = fw.world
    world.run("host", "nft", "delete", "rule", "ip", "docker-bridges", "filter-forward-in__docker0", "handle",
              _mark_handle(world))
    code, out, err = fw("init")
    assert code == 4 and len(err) == 1 and "--bridge-accept-fwmark" in err[0] and "nothing was changed" in err[0]
    assert world.listing() == ""


def _mark_handle(world) -> str:
    listing = json.loads(world.run("host", "nft", "-j", "list", "chain", "ip", "docker-bridges", "filter-forward-in__docker0").stdout)
    return next(str(o["rule"]["handle"]) for o in listing["nftables"] if o.get("rule", {}).get("comment") == "ALLOW FW MARK")


def test_egress_deny_on_nftables(fw):
    """'egress web deny' with its outbound rules, on the nftables backend, with packets."""
    world = fw.world
    world.serve("ext", "443", "53")
    assert fw("init")[0] == 0
    assert world.reaches("web", "172.17.0.2", "198.51.100.3", 443)
    assert fw("egress", "web", "deny")[0] == 0
    assert fw("add", "web", "--source=.", "--dest=198.51.100.2", "--dport=443,8443")[0] == 0
    assert fw("add", "web", "--source=.", "--dest=198.51.100.2", "-p", "icmp", "--icmp-type", "echo-request")[0] == 0
    assert world.reaches("web", "172.17.0.2", "198.51.100.2", 443)  # its outbound rule
    assert world.pings("web", "172.17.0.2", "198.51.100.2")
    assert not world.pings("web", "172.17.0.2", "198.51.100.2", kind=13)
    assert not world.reaches("web", "172.17.0.2", "198.51.100.3", 443)  # anywhere else
    assert world.reaches("web", "172.17.0.2", "198.51.100.3", 53)  # its name server (resolv.conf)
    assert not world.reaches("web", "172.17.0.2", "172.17.0.1", 9100)  # the host
    # IPv6 locked too; its name server and its outbound rules are IPv4 addresses
    assert not world.reaches("web", "fd00:17::2", "2001:db8:51::3", 53)
    assert not world.reaches("web", "fd00:17::2", "2001:db8:51::2", 443)
    assert world.reaches("db", "fd00:17::3", "2001:db8:51::2", 443)
    assert world.reaches("db", "172.17.0.3", "198.51.100.3", 443)  # db is not locked
    assert "docker-fw egress web deny" in fw("ls", "web")[1]
    assert fw("check") == (0, ["check: no drift"], [])
    assert fw("egress", "web", "allow")[0] == 0
    assert world.reaches("web", "172.17.0.2", "198.51.100.3", 443)
    assert world.reaches("web", "172.17.0.2", "172.17.0.1", 9100)
    assert " drop comment \"docker-fw:web:" not in world.listing() + world.listing("ip6")


def test_explain_is_refused_on_nftables_by_name(fw):
    assert fw("init")[0] == 0
    before = fw.world.listing()
    code, out, err = fw("explain", "--source", "198.51.100.2", "--dest", "web", "--dport", "80")
    assert (code, out, len(err)) == (2, [], 1)
    assert "explain is not available on the nftables backend" in err[0]
    assert fw.world.listing() == before
