"""End to end: 'init --log-blocked' on a real Docker 29 in nftables mode is refused in
one line, exit 2, nothing recorded and the engine's nftables ruleset untouched:
the nftables backend logs nothing yet (test_blocklog_e2e.py proves the iptables log).

The engine's own 'docker info' is what makes docker-fw pick its nftables backend
here (backends.choice), so this is the path a real host in that mode takes.
"""

from __future__ import annotations

import pytest

from docker_fw.store import Store
from tests.e2e.fw import Fw

pytestmark = pytest.mark.e2e


def test_log_blocked_is_refused_on_the_nftables_backend(sandbox29_nftables, tmp_path):
    sb = sandbox29_nftables
    sb.reset()
    try:
        fw = Fw(sb, str(tmp_path / "state"))
        before = sb.nft_ruleset()
        result = fw.run("init", "--log-blocked")
        assert result.returncode == 2 and result.stdout == "", result
        assert result.stderr.splitlines() == [
            "docker-fw init: --log-blocked: not supported with the engine's nftables firewall backend "
            "(docker-fw logs blocked connections with iptables rules only, so far); nothing changed"]
        assert sb.nft_ruleset() == before
        with Store.open(directory=fw.state_dir) as store:  # nothing recorded
            assert not store.log_blocked()
    finally:
        sb.reset()
