"""End to end: 'egress NAME deny' locks a container's outbound traffic, proved with packets.

The external namespace (198.51.100.2, .3, .4) runs TCP servers on several
ports on every address; a locked container reaches exactly what its rules
allow (a port list, a port range, ICMP echo to one address), an unlocked one
everything; the lock follows the container to a new address under 'watch', and
the container that takes its old address is neither locked nor allowed
anything of the locked one's.
"""

from __future__ import annotations

import pytest

from tests.e2e.fw import baseline_filter, fw  # noqa: F401 (fixtures)
from tests.e2e.test_watch_e2e import eventually, watch  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

EXT = "198.51.100.2"  # the allowed destination
EXT_OTHER = "198.51.100.3"  # never allowed
DNS_SERVER = "198.51.100.4"  # the locked container's --dns
PORTS = (80, 443, 9150, 9300, 53)
ALLOWS = (
    ("--dport", "80,443"),  # a list: multiport
    ("--dport", "9100:9200"),  # a range
    ("-p", "icmp", "--icmp-type", "echo-request"),
)


def reach(fw, name: str) -> dict:
    """Which destinations container NAME reaches now (TCP connect and read, ICMP echo)."""
    seen = {f"{ip}:{port}": fw.container_connects(name, ip, port)
            for ip, port in ((EXT, 80), (EXT, 443), (EXT, 9150), (EXT, 9300), (EXT_OTHER, 80))}
    seen[f"ping {EXT}"] = fw.container_pings(name, EXT)
    seen[f"ping {EXT_OTHER}"] = fw.container_pings(name, EXT_OTHER)
    seen["host 198.51.100.1:9099"] = fw.container_connects(name, "198.51.100.1", 9099)
    return seen


LOCKED = {
    f"{EXT}:80": True, f"{EXT}:443": True, f"{EXT}:9150": True, f"{EXT}:9300": False,
    f"{EXT_OTHER}:80": False, f"ping {EXT}": True, f"ping {EXT_OTHER}": False,
    "host 198.51.100.1:9099": False,
}
OPEN = {key: True for key in LOCKED}


def lock(fw, name: str) -> None:
    fw.ok("egress", name, "deny")
    for allow in ALLOWS:
        fw.ok("add", name, "--source=.", f"--dest={EXT}", *allow)


def test_a_locked_container_reaches_only_what_it_is_allowed(sandbox, fw):
    sandbox.run_server("locked", ports=(8000,), extra_args=("--dns", DNS_SERVER))
    sandbox.run_server("free", ports=(8000,))
    fw.ok("init")
    with fw.ext_server(PORTS), fw.host_server("198.51.100.1", 9099):
        assert reach(fw, "locked") == OPEN  # Docker's default: everything
        lock(fw, "locked")
        assert reach(fw, "locked") == LOCKED
        assert reach(fw, "free") == OPEN
        # DNS to its own name server stays open (tcp 53 here), not port 53 elsewhere
        assert fw.container_connects("locked", DNS_SERVER, 53)
        assert not fw.container_connects("locked", EXT_OTHER, 53)
        # Connections others open to it work: replies are not locked.
        fw.ok("add-internal", "locked", "--source=free", "--dport=8000")
        assert fw.container_connects("free", sandbox.container_ip("locked"), 8000)

        listed = fw.ok("ls", "locked").stdout.splitlines()
        assert "docker-fw egress locked deny" in listed
        assert "docker-fw add locked --source=. --dest=198.51.100.2 --dport=80,443 --protocol=tcp" in listed
        assert "docker-fw add locked --source=. --dest=198.51.100.2 --dport=9100:9200 --protocol=tcp" in listed
        assert fw.run("check").returncode == 0
        assert fw.run("replay", "--dry-run").returncode == 0

        # Every line 'ls' prints records the same again: changes nothing.
        before = fw.rules_text()
        for line in listed:
            fw.ok_shell_line(line)
        assert fw.rules_text() == before

        fw.ok("egress", "locked", "allow")
        assert reach(fw, "locked") == OPEN
        fw.ok("egress", "locked", "deny")
        assert reach(fw, "locked") == LOCKED
        out = fw.ok("drop", "locked").stdout
        assert "egress policy" in out
        assert reach(fw, "locked") == OPEN
        assert "egress" not in fw.ok("ls").stdout
        assert fw.run("check").returncode == 0


def test_a_bad_egress_policy_changes_nothing(sandbox, fw):
    sandbox.run_server("locked", ports=(8000,))
    fw.ok("init")
    before = fw.rules_text()
    result = fw.run("egress", "locked", "block")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    result = fw.run("add", "locked", "--source=.", f"--dest={EXT}", "--dport", "9200:9100")
    assert result.returncode == 2 and "runs backwards" in result.stderr
    assert fw.rules_text() == before
    assert fw.ok("ls").stdout == ""


def test_the_lock_follows_a_restart_under_watch_and_never_sticks_to_the_address(sandbox, fw, watch):
    # Addresses the tests before used are skipped: the kernel's conntrack keeps
    # their ICMP flows for 30 s, and busybox's ping (same pid, so same ICMP id,
    # in every new container) would be a packet of such a flow: ESTABLISHED.
    for n in range(3):
        sandbox.run_server(f"pad{n}", ports=(8001,))
    sandbox.run_server("locked", ports=(8000,))
    fw.ok("init")
    lock(fw, "locked")
    watch.start()
    with fw.ext_server(PORTS), fw.host_server("198.51.100.1", 9099):
        assert reach(fw, "locked") == LOCKED
        # stop it, let another container take its address, start it again
        old, new = sandbox.move("locked", ports=(8000,), squatter="squatter")
        assert sandbox.container_ip("squatter") == old
        assert eventually(lambda: reach(fw, "locked") == LOCKED, timeout=15), reach(fw, "locked")
        # the container at the old address is not locked ...
        assert reach(fw, "squatter") == OPEN
        # ... and, locked in turn, inherits none of the old holder's destinations
        fw.ok("egress", "squatter", "deny")
        assert eventually(lambda: not fw.container_connects("squatter", EXT, 80))
        assert not fw.container_pings("squatter", EXT)
        assert reach(fw, "locked") == LOCKED
        assert eventually(lambda: fw.run("check").returncode == 0), fw.run("check").stdout
