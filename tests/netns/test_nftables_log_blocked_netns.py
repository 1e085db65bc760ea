"""'init --log-blocked' on Docker's nftables mode: refused in one line, exit 2,
nothing recorded and no nft table touched (the nftables backend logs nothing yet).

The same world as test_nftables_cli_netns.py (the real nft in a throwaway
namespace, a stand-in engine reporting the nftables firewall backend).
"""

from __future__ import annotations

import pytest

from nft_world import world  # noqa: F401 (a fixture)
from test_nftables_cli_netns import fw  # noqa: F401 (a fixture)

pytestmark = pytest.mark.netns


def test_log_blocked_is_refused_in_one_line_and_changes_nothing(fw):  # noqa: F811
    code, out, err = fw("init")
    assert code == 0, err
    ruleset = fw.world.run("host", "nft", "list", "ruleset").stdout
    code, out, err = fw("init", "--log-blocked")
    assert code == 2 and out == []
    assert err == ["docker-fw init: --log-blocked: not supported with the engine's nftables firewall backend "
                   "(docker-fw logs blocked connections with iptables rules only, so far); nothing changed"], err
    assert fw.world.run("host", "nft", "list", "ruleset").stdout == ruleset
    code, out, err = fw("init")  # not recorded: no warning about logging
    assert code == 0 and not any("log" in line for line in err + out), (out, err)
    assert fw("init", "--no-log-blocked")[0] == 0  # turning it off is always fine
