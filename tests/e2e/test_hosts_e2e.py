"""End to end: a container's root user makes its own /etc/hosts hostile while 'watch' runs."""

from __future__ import annotations

import pytest

from tests.e2e.fw import baseline_filter, fw  # noqa: F401 (fixtures)
from tests.e2e.test_watch_e2e import eventually, watch  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

HOSTILE_MB = 300  # as in the attack that cost 1.6 GB; docker-fw reads 1 MiB at most
RSS_BOUND_KB = 200 * 1024  # generous: watch needs some 40 MB


def hosts_bytes(sandbox, name: str) -> bytes:
    """The host-side file (HostsPath), as bytes: the container may have put anything there."""
    with open(sandbox.client().api.inspect_container(name)["HostsPath"], "rb") as handle:
        return handle.read(1 << 20)


def address_for(sandbox, name: str, target: str) -> str | None:
    """The address NAME's /etc/hosts gives TARGET first (glibc's lookup), read host side."""
    for line in hosts_bytes(sandbox, name).split(b"\n"):
        fields = line.split(b"#", 1)[0].split()
        if target.encode() in fields[1:]:
            return fields[0].decode()
    return None


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_hostile_hosts_file_stops_neither_watch_nor_the_others(sandbox, fw, watch):
    fw.ok("init")
    sandbox.run_server("srv", ports=(80,))
    for source in ("cli", "evil"):
        sandbox.run_server(source, ports=())
        fw.ok("add-two-ways", "srv", "--source", source, "--dport", "80")
    watch.start()
    assert watch.proc.pid and open(f"/proc/{watch.proc.pid}/comm").read().startswith("python")  # nsenter exec'd

    # Bytes that are not UTF-8: kept as they are, and evil's entry follows srv like cli's.
    sandbox.docker("exec", "evil", "sh", "-c", r"printf '# caf\351 \377\376\n' >> /etc/hosts")
    _, ip = sandbox.move("srv")
    assert eventually(lambda: address_for(sandbox, "cli", "srv") == ip == address_for(sandbox, "evil", "srv")), (
        watch.text()
    )
    assert b"# caf\xe9 \xff\xfe\n" in hosts_bytes(sandbox, "evil")

    # 300 MB of zeros: refused unread, with one warning; cli's entry and rule still follow srv.
    sandbox.docker("exec", "evil", "dd", "if=/dev/zero", "of=/etc/hosts", "bs=1048576", f"count={HOSTILE_MB}")
    try:
        _, ip = sandbox.move("srv", squatter="squatter2")
        assert eventually(lambda: address_for(sandbox, "cli", "srv") == ip), watch.text()
        assert fw.container_connects("cli", "srv", 80)
        assert watch.proc.poll() is None, watch.text()
        warnings = [e["msg"] for e in watch.entries() if e["level"] == "warning" and "evil's hosts file" in e["msg"]]
        assert len(warnings) == 1 and warnings[0].endswith("larger than 1 MiB, the most docker-fw reads"), watch.text()
        assert peak_rss_kb(watch.proc.pid) < RSS_BOUND_KB

        # The CLI says so too: check lists it (exit 1), replay does the rest and exits 3.
        check = fw.run("check")
        assert check.returncode == 1 and "hosts (evil): cannot read evil's hosts file" in check.stdout, check
        replay = fw.run("replay")
        assert replay.returncode == 3 and "hosts file of evil not updated" in replay.stderr, replay
    finally:
        sandbox.docker("exec", "evil", "sh", "-c", ": > /etc/hosts")  # give the disk space back
