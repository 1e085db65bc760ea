"""Docker 29 from its static tarball: what the rest of the suite assumes about it.

The engine is Docker's static tarball layout (docker/dockerd, docker-proxy,
runc), found by tests/harness/engines.py ($DOCKER_FW_ENGINE29, else
shared/engines/docker-29.7.2.tar.xz beside the checkout) and unpacked into
/opt/docker-fw-engines/29.  With its default firewall backend (iptables) it
writes 28.x's layout: that is why most layout tests do not run on it
(tests/e2e/conftest.py, ON_DOCKER29).  In nftables mode (NFTABLES_ARGS) it
writes nftables tables of its own and nothing in iptables.
"""

from __future__ import annotations

import pytest

from docker_fw.backends.iptables import layouts
from docker_fw.backends.iptables.process import parse_save
from tests.e2e.conftest import NFTABLES_FWMARK, only_on
from tests.e2e.fw import ALLOWED, OTHER, PORT, baseline_filter, fw, web  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def _mark_and_mask(spec: str) -> tuple[int, int]:
    mark, _, mask = spec.partition("/")
    return int(mark, 0), int(mask or "0xffffffff", 0)


@only_on("29")
def test_engine_29_with_iptables_writes_the_28_layout(sandbox, fw, web):
    version = sandbox.client().version()
    assert version["Version"].startswith("29."), version["Version"]
    # The sandbox drives it with a client of API >= 1.44 (Docker 29.0 refuses less;
    # this 29.7.2 build reports MinAPIVersion 1.40, so Debian 12's 1.41 CLI would do here).
    client_api = sandbox.docker("version", "--format", "{{.Client.APIVersion}}").stdout.strip()
    assert tuple(map(int, client_api.split("."))) >= (1, 44), client_api
    table = parse_save(sandbox.snapshot_filter())
    assert layouts.detect(table).name == layouts.DOCKER_28
    assert table.has_rule("DOCKER-BRIDGE", "-o", "docker0", "-j", "DOCKER")
    assert [r.target() for r in table.chain_rules("FORWARD")] == ["DOCKER-USER", "DOCKER-FORWARD"]
    # Docker's default: every client reaches the published port; after init, none
    assert sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)
    fw.ok("init")
    assert not sandbox.ext_connect(sandbox.host_ip, PORT, OTHER)


def test_nftables_mode_engine_starts_and_creates_docker_bridges(sandbox29_nftables):
    sb = sandbox29_nftables
    sb.reset()
    try:
        sb.run_server("web", ports=(80,), publish=(f"{PORT}:80",))
        assert sb.firewall_backend == "nftables"
        assert {("ip", "docker-bridges"), ("ip6", "docker-bridges")} <= sb.nft_tables()
        rules = [e["rule"] for e in sb.nft_ruleset()["nftables"] if "rule" in e]
        chains = {r["chain"] for r in rules if r["table"] == "docker-bridges"}
        assert "filter-forward-in__docker0" in chains, sorted(chains)
        # the accept mark the engine was given is the one its bridge chain accepts
        mark_rules = [r for r in rules if r.get("comment") == "ALLOW FW MARK" and r["chain"] == "filter-forward-in__docker0"]
        assert len(mark_rules) == 1, mark_rules
        match = mark_rules[0]["expr"][0]["match"]
        mark, mask = _mark_and_mask(NFTABLES_FWMARK)
        assert match["left"]["&"][1] == mask and match["right"] == mark, match
        # iptables is left alone: no Docker chain, FORWARD's policy stays ACCEPT
        saved = sb.snapshot_filter()
        assert ":DOCKER" not in saved and ":FORWARD ACCEPT" in saved, saved
        # forwarding was turned on before dockerd started: the published port answers
        assert sb.engine_run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
        assert sb.ext_fetch(sb.host_ip, PORT, ALLOWED) == "web\n"
    finally:
        sb.reset()
