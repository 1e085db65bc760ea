"""A host whose own firewall is nftables: an ``inet filter`` table, as Debian's
/etc/nftables.conf makes one, with base chains on the input and forward hooks.

What is proved here, with packets, inside the sandbox engine's namespace (its
"host"; the machine's own firewall is never touched):

- every base chain on a hook sees the packet, whichever table holds it: an
  accept ends only its own chain, a drop is final;
- so the host's input policy drop does not cover published ports (Docker DNATs
  them: forwarded, not input), docker-fw's whitelist does, and no accept in the
  host's forward chain opens what docker-fw drops;
- a host forward chain with policy drop drops what docker-fw allows until the
  host accepts traffic to Docker's bridge itself;
- ``add-input`` cannot open what the host's input chain drops; with the port
  open there, add-input picks the containers when iptables' INPUT drops
  (iptables backend), or when the host's input chain accepts the engine's
  accept mark instead, which add-input rules set (nftables backend);
- reloading a configuration that starts with ``flush ruleset`` (Debian's does)
  removes Docker's and docker-fw's tables too (iptables-nft's, or nftables'):
  every published port is then open to all through docker-proxy, ``check``
  says so; an engine restart puts Docker's rules back (iptables: with FORWARD's
  policy ACCEPT, which ``init`` refuses until ``iptables -P FORWARD DROP``);
  ``init`` and ``replay`` close it again.

CASES lists (engine, firewall backend) pairs: Docker 29 with each of its
firewall backends, so each of docker-fw's.  The steps about one backend say so.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import NFTABLES_ARGS, NFTABLES_FWMARK, SANDBOX_NAME, engine_id, skip_unselected, start_sandbox
from tests.e2e.fw import ALLOWED, OTHER, PORT, Fw

pytestmark = pytest.mark.e2e

# The iptables backend on Docker 29 (28.x's layout; the kernel's rules about base
# chains do not depend on the engine).
CASES = [("29", "iptables"), ("29", "nftables")]
DAEMON_ARGS = {"iptables": [], "nftables": list(NFTABLES_ARGS)}
MARK_VALUE, MARK_MASK = (int(part, 0) for part in NFTABLES_FWMARK.split("/"))
# What lets add-input's rules through a host input chain that drops, on the nftables backend
MARK_ACCEPT = f"meta mark & {MARK_MASK:#x} == {MARK_VALUE:#x} accept"
BRIDGE = "docker0"
HOST_PORT = 9000  # a service on the Docker host that containers may reach (add-input)


def host_firewall(input_policy: str = "accept", forward_policy: str = "accept",
                  input_rules=(), forward_rules=(), flush: bool = False) -> str:
    """An nft script for the host's own firewall, Debian /etc/nftables.conf style."""
    lines = ["flush ruleset"] if flush else []
    lines += [
        "table inet filter {",
        "  chain input {",
        f"    type filter hook input priority filter; policy {input_policy};",
        *(f"    {r}" for r in input_rules),
        "  }",
        "  chain forward {",
        f"    type filter hook forward priority filter; policy {forward_policy};",
        *(f"    {r}" for r in forward_rules),
        "  }",
        "  chain output {",
        "    type filter hook output priority filter; policy accept;",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


# What a host with policy drop on input keeps open: its replies, loopback.
INPUT_BASICS = ("ct state established,related accept", 'iif "lo" accept')


class Host:
    """The sandbox engine's namespace as a host with an nftables firewall of its own."""

    def __init__(self, sb, backend: str):
        self.sb = sb
        self.backend = backend

    def load(self, script: str) -> None:
        self.sb.engine_run(["nft", "-f", "-"], input=script)

    def add_rule(self, chain: str, *words: str) -> None:
        self.sb.engine_run(["nft", "add", "rule", "inet", "filter", chain, *words])

    def remove_firewall(self) -> None:
        # create-if-missing, then delete: nothing else of the ruleset is touched
        self.load("table inet filter\ndelete table inet filter\n")

    def remove_docker_fw_tables(self) -> None:
        """docker-fw's nftables tables (the nftables backend's), where they exist."""
        self.load("".join(f"table {f} docker-fw\ndelete table {f} docker-fw\n" for f in ("ip", "ip6")))

    def reaches(self, src: str) -> bool:
        return self.sb.ext_fetch(self.sb.host_ip, PORT, src, timeout=1.5) == "web\n"


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"{engine_id(case[0])}-{case[1]}")
def host_engine(request):
    engine, backend = request.param
    skip_unselected(engine)
    sb = start_sandbox(engine, commands=(("nft", "nftables"),), name=f"{SANDBOX_NAME}h{engine}",
                       extra_daemon_args=DAEMON_ARGS[backend])
    try:
        yield sb, backend, sb.snapshot_filter()
    finally:
        sb.stop()


@pytest.fixture
def host(host_engine, tmp_path):
    sb, backend, baseline = host_engine
    h = Host(sb, backend)
    sb.reset()
    sb.restore_filter(baseline)
    h.remove_docker_fw_tables()
    h.fw = Fw(sb, str(tmp_path / "state"))
    try:
        yield h
    finally:
        h.remove_firewall()
        sb.reset()
        sb.restore_filter(baseline)
        h.remove_docker_fw_tables()


def test_the_hosts_input_drop_leaves_published_ports_to_docker_fw(host):
    sb, fw = host.sb, host.fw
    # input policy drop, and an explicit accept of everything forwarded to Docker's bridge
    host.load(host_firewall(input_policy="drop", input_rules=INPUT_BASICS,
                            forward_rules=(f'oifname "{BRIDGE}" accept',)))
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    # Docker's default: open to all, the input drop notwithstanding (DNAT: forwarded)
    assert host.reaches(OTHER)
    fw.ok("init")
    # the host's forward accept ends only its own chain: docker-fw's drop is final
    assert not host.reaches(OTHER) and not host.reaches(ALLOWED)
    fw.ok("allow", "web", ALLOWED)
    assert host.reaches(ALLOWED) and not host.reaches(OTHER)


def test_the_hosts_forward_drop_is_final_until_it_accepts_dockers_traffic(host):
    sb, fw = host.sb, host.fw
    host.load(host_firewall(forward_policy="drop"))
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert not host.reaches(ALLOWED)  # docker-fw accepts; the host's forward chain drops
    host.add_rule("forward", "ct", "state", "established,related", "accept")
    host.add_rule("forward", "oifname", BRIDGE, "accept")
    assert host.reaches(ALLOWED) and not host.reaches(OTHER)  # docker-fw still decides who


def test_add_input_cannot_open_what_the_hosts_input_chain_drops(host):
    sb, fw = host.sb, host.fw
    host.load(host_firewall(input_policy="drop", input_rules=INPUT_BASICS))
    fw.ok("init")
    sb.run_server("client", ports=())
    sb.run_server("stranger", ports=())
    gateway = fw.gateway("client")
    with fw.host_server(gateway, HOST_PORT):
        fw.ok("add-input", "client", "--source", ".", "--dest", "/", "--dport", str(HOST_PORT))
        assert not fw.container_connects("client", gateway, HOST_PORT)
        host.add_rule("input", "iifname", BRIDGE, "tcp", "dport", str(HOST_PORT), "accept")
        # iptables' INPUT accepts by policy: the host's rule alone decides
        assert fw.container_connects("client", gateway, HOST_PORT)
        assert fw.container_connects("stranger", gateway, HOST_PORT)
        if host.backend == "iptables":
            with fw.input_policy_drop():  # now docker-fw's add-input picks the containers
                assert fw.container_connects("client", gateway, HOST_PORT)
                assert not fw.container_connects("stranger", gateway, HOST_PORT)
        else:  # nftables: the host accepts add-input's mark instead of the port
            host.remove_firewall()
            host.load(host_firewall(input_policy="drop", input_rules=(*INPUT_BASICS, MARK_ACCEPT)))
            assert fw.container_connects("client", gateway, HOST_PORT)
            assert not fw.container_connects("stranger", gateway, HOST_PORT)


def test_a_reload_that_flushes_the_ruleset_opens_published_ports_until_repaired(host):
    sb, fw = host.sb, host.fw
    sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
    fw.ok("init")
    fw.ok("allow", "web", ALLOWED)
    assert host.reaches(ALLOWED) and not host.reaches(OTHER)
    assert fw.run("check").returncode == 0
    # Debian's /etc/nftables.conf, as `systemctl reload nftables` loads it
    host.load(host_firewall(flush=True))
    assert "DOCKER" not in sb.engine_run(["iptables-save"]).stdout  # Docker's tables are gone, NAT too
    assert sb.nft_tables() == {("inet", "filter")}  # docker-bridges and docker-fw too
    # no DNAT and no FORWARD filter any more: the port is docker-proxy's, open to all
    assert host.reaches(OTHER)
    check = fw.run("check")
    assert check.returncode != 0, check.stdout + check.stderr
    # The engine writes its rules again when it starts, but leaves FORWARD's new
    # policy ACCEPT (it sets DROP only when it turns forwarding on itself, and
    # forwarding is on): init refuses, changing nothing, until the host sets it.
    sb.restart_engine()
    sb.docker("start", "web")
    sb.wait_listening("web", 80)
    if host.backend == "iptables":
        refused = fw.run("init")
        assert refused.returncode == 4 and "iptables -P FORWARD DROP" in refused.stderr, refused.stderr
        assert host.reaches(OTHER)
        sb.engine_run(["iptables", "-P", "FORWARD", "DROP"])
    else:  # Docker's tables are back; docker-fw's are not
        assert host.reaches(OTHER)
    fw.ok("init")
    fw.ok("replay")
    assert host.reaches(ALLOWED) and not host.reaches(OTHER)
    assert fw.run("check").returncode == 0
    # a configuration that replaces only its own table leaves everyone else's alone
    host.load("table inet filter\ndelete table inet filter\n" + host_firewall())
    assert host.reaches(ALLOWED) and not host.reaches(OTHER)
    assert fw.run("check").returncode == 0
