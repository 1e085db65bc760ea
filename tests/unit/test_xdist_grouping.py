"""tests/conftest.py: which xdist work unit an end-to-end test belongs to."""

from __future__ import annotations

import pytest

from tests.conftest import engine_group


@pytest.mark.parametrize(
    "nodeid, group",
    [
        ("tests/e2e/test_core_e2e.py::test_drop[docker20.10]", "docker20.10"),
        ("tests/e2e/test_core_e2e.py::test_drop[docker28]", "docker28"),
        ("tests/e2e/test_core_e2e.py::test_drop[docker29]", "docker29"),
        ("tests/e2e/test_host_nftables_e2e.py::test_x[docker29-iptables]", "docker29"),
        ("tests/e2e/test_host_nftables_e2e.py::test_x[docker29-nftables]", "docker29-nft"),
        ("tests/e2e/test_nftables_e2e.py::test_x[docker29-nft]", "docker29-nft"),
        ("tests/e2e/test_x.py::test_y[docker29-nft-tcp]", "docker29-nft"),
        ("tests/e2e/test_x.py::test_y[docker29-nfs]", "docker29"),
        ("tests/e2e/test_x.py::test_y[docker28-tcp]", "docker28"),
        ("tests/e2e/test_x.py::test_y[udp-docker20.10]", "docker20.10"),
        ("tests/e2e/test_x.py::test_y[a-docker28-b]", "docker28"),
        ("tests/e2e/test_ipv6_e2e.py::test_allow_replay_drop_over_ipv6", None),
        ("tests/unit/test_cli.py::test_argument_errors[argv0---source is mandatory]", None),
        ("tests/unit/test_x.py::test_y[notdocker28]", None),
        ("tests/unit/test_x.py::test_y[docker28x]", None),
        ("tests/unit/test_x.py::test_y[docker29n]", None),
    ],
)
def test_engine_group(nodeid, group):
    assert engine_group(nodeid) == group
