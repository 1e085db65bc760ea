"""hosts: docker-fw's lines in a container's /etc/hosts, rewritten in place."""

from __future__ import annotations

import os

import pytest

from docker_fw import hosts
from docker_fw.hosts import MARKER, parse_hosts, render_hosts, update_hosts_file, write_in_place

# What Docker writes (libnetwork etchosts): its header, a legacy --link line
# for "endpoint" (address, alias, id, name), an --add-host line, and the
# container's own record last.
DOCKER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff00::1\tip6-allnodes\n"
    "ff00::2\tip6-allrouters\n"
    "172.17.0.9\tendpoint 0123456789ab old_endpoint\n"
    "10.0.0.1\tgateway.example\n"
    "172.17.0.2\tabcdef012345\n"
)


def lookup(text: str, name: str) -> str | None:
    """glibc's "files" lookup: the first line naming the host, case-insensitively."""
    for address, names in parse_hosts(text):
        if name.lower() in (n.lower() for n in names):
            return address
    return None


def ours(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.endswith(MARKER)]


def foreign(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.rstrip().endswith(MARKER))


# --- parse_hosts ----------------------------------------------------------------


def test_parse_hosts_skips_comments_and_blank_lines():
    text = "# header\n\n127.0.0.1 localhost  # trailing\n  ::1\tlocalhost ip6-localhost\n10.0.0.1\n"
    assert parse_hosts(text) == [
        ("127.0.0.1", ["localhost"]),
        ("::1", ["localhost", "ip6-localhost"]),
        ("10.0.0.1", []),
    ]


# --- render_hosts -----------------------------------------------------------------


def test_render_adds_our_lines_sorted_at_the_top():
    out = render_hosts(DOCKER, {"zeta": "172.17.0.5", "alpha": "172.17.0.4"})
    assert out == f"172.17.0.4\talpha\t{MARKER}\n172.17.0.5\tzeta\t{MARKER}\n" + DOCKER


def test_render_keeps_foreign_lines_byte_for_byte():
    text = "# written by hand\r\n\n127.0.0.1   localhost\t\n\n  # indented comment\n1.2.3.4 x # not ours: docker-fw\n"
    out = render_hosts(text, {"endpoint": "172.17.0.3"})
    assert foreign(out) == text
    assert out.endswith(text)


def test_our_address_wins_over_a_legacy_link_line():
    # Docker's --link line says 172.17.0.9; glibc takes the first match.
    assert lookup(DOCKER, "endpoint") == "172.17.0.9"
    out = render_hosts(DOCKER, {"endpoint": "172.17.0.3"})
    assert lookup(out, "endpoint") == "172.17.0.3"
    assert lookup(out, "ENDPOINT") == "172.17.0.3"
    # Docker's line is left alone, other names keep resolving as before.
    assert "172.17.0.9\tendpoint 0123456789ab old_endpoint\n" in out
    assert lookup(out, "old_endpoint") == "172.17.0.9"
    assert lookup(out, "localhost") == "127.0.0.1"
    assert lookup(out, "abcdef012345") == "172.17.0.2"


def test_our_address_wins_over_a_line_appended_after_ours():
    # Docker (or someone) appends a line for the name after our block was written.
    out = render_hosts(DOCKER, {"endpoint": "172.17.0.3"}) + "172.17.0.99\tendpoint\n"
    again = render_hosts(out, {"endpoint": "172.17.0.3"})
    assert lookup(again, "endpoint") == "172.17.0.3"
    assert again == out  # already first: nothing to move


def test_stale_lines_are_replaced_not_duplicated():
    first = render_hosts(DOCKER, {"endpoint": "172.17.0.3", "db": "172.17.0.4"})
    moved = render_hosts(first, {"endpoint": "172.17.0.7"})
    assert ours(moved) == [f"172.17.0.7\tendpoint\t{MARKER}"]
    assert lookup(moved, "endpoint") == "172.17.0.7"
    assert lookup(moved, "db") is None
    assert foreign(moved) == DOCKER


def test_our_lines_are_found_anywhere_in_the_file():
    # e.g. written by an older version at the bottom, or with other spacing
    text = DOCKER + f"172.17.0.3  endpoint {MARKER}\n" + f"172.17.0.4\tdb\t{MARKER}  \n"
    out = render_hosts(text, {"endpoint": "172.17.0.3"})
    assert out == f"172.17.0.3\tendpoint\t{MARKER}\n" + DOCKER


def test_render_is_idempotent():
    entries = {"endpoint": "172.17.0.3", "db": "fd00::4"}
    once = render_hosts(DOCKER, entries)
    assert render_hosts(once, entries) == once
    assert len(ours(once)) == 2


def test_empty_entries_remove_our_lines():
    with_ours = render_hosts(DOCKER, {"endpoint": "172.17.0.3"})
    assert render_hosts(with_ours, {}) == DOCKER
    assert render_hosts(DOCKER, {}) == DOCKER
    assert render_hosts("", {}) == ""


def test_trailing_newline_is_kept():
    assert render_hosts("", {"a": "10.0.0.1"}) == f"10.0.0.1\ta\t{MARKER}\n"
    out = render_hosts("127.0.0.1 localhost\n", {"a": "10.0.0.1"})
    assert out.endswith("localhost\n")
    # a foreign last line without a newline is left as it was
    assert render_hosts("127.0.0.1 localhost", {"a": "10.0.0.1"}).endswith("localhost")
    # our own last line without a newline is dropped entirely
    assert render_hosts(f"127.0.0.1 localhost\n10.0.0.1\ta\t{MARKER}", {}) == "127.0.0.1 localhost\n"


def test_addresses_are_written_canonically():
    out = render_hosts("", {"v6": "FD00:0:0::0004", "v4": "172.17.0.3"})
    assert ours(out) == [f"172.17.0.3\tv4\t{MARKER}", f"fd00::4\tv6\t{MARKER}"]
    assert render_hosts(out, {"v6": "fd00::4", "v4": "172.17.0.3"}) == out


@pytest.mark.parametrize("name", ["my_app.v2-1", "A", "0abc", "web.example.com"])
def test_valid_names(name):
    assert lookup(render_hosts("", {name: "10.0.0.1"}), name) == "10.0.0.1"


@pytest.mark.parametrize("name", ["", "/endpoint", "-lead", "_lead", ".lead", "has space", "tab\tname", "new\nline", "a#b"])
def test_invalid_names_are_rejected(name):
    with pytest.raises(ValueError, match="invalid host name"):
        render_hosts(DOCKER, {name: "10.0.0.1"})


@pytest.mark.parametrize("name", ["localhost", "LocalHost", "ip6-loopback", "ip6-allrouters"])
def test_loopback_names_are_refused(name):
    with pytest.raises(ValueError, match="refusing to override"):
        render_hosts(DOCKER, {name: "10.0.0.1"})


@pytest.mark.parametrize("address", ["", "172.17.0", "172.17.0.256", "endpoint", "10.0.0.0/8", " 10.0.0.1"])
def test_invalid_addresses_are_rejected(address):
    with pytest.raises(ValueError, match=r"invalid address .* for host 'endpoint'"):
        render_hosts(DOCKER, {"endpoint": address})


def test_non_string_name_is_rejected():
    with pytest.raises(ValueError, match="invalid host name"):
        render_hosts("", {1: "10.0.0.1"})  # type: ignore[dict-item]


# --- write_in_place / update_hosts_file -----------------------------------------


def test_write_in_place_keeps_the_inode_and_truncates(tmp_path):
    path = tmp_path / "hosts"
    path.write_text(DOCKER)
    before = os.stat(path)
    write_in_place(str(path), "127.0.0.1\tlocalhost\n")
    after = os.stat(path)
    assert after.st_ino == before.st_ino
    assert (after.st_dev, after.st_nlink) == (before.st_dev, before.st_nlink)
    assert path.read_bytes() == b"127.0.0.1\tlocalhost\n"


def test_write_in_place_sees_through_a_second_link(tmp_path):
    # A hard link stands in for the bind mount: both names share one inode,
    # so a rename-based write would leave the other name with the old text.
    path, mount = tmp_path / "hosts", tmp_path / "mounted"
    path.write_text(DOCKER)
    os.link(path, mount)
    write_in_place(str(path), DOCKER + "10.0.0.1\tnew\n")
    assert mount.read_text() == DOCKER + "10.0.0.1\tnew\n"


def test_write_in_place_does_not_create_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_in_place(str(tmp_path / "missing"), "x\n")


def test_write_in_place_writes_everything_in_one_call(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    path.write_text("x" * 100)
    writes = []

    class Counting:
        """Proxy for the file object that records each write()."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            writes.append(len(data))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(hosts, "open", lambda *a, **kw: Counting(open(*a, **kw)), raising=False)
    content = "y" * 200_000  # far beyond any buffer size
    write_in_place(str(path), content)
    assert writes == [len(content)]
    assert path.read_text() == content


def test_update_hosts_file_changes_only_when_needed(tmp_path):
    path = tmp_path / "hosts"
    path.write_text(DOCKER)
    ino = os.stat(path).st_ino
    assert update_hosts_file(str(path), {"endpoint": "172.17.0.3"}) is True
    assert lookup(path.read_text(), "endpoint") == "172.17.0.3"
    mtime = os.stat(path).st_mtime_ns
    assert update_hosts_file(str(path), {"endpoint": "172.17.0.3"}) is False
    assert os.stat(path).st_mtime_ns == mtime
    assert update_hosts_file(str(path), {}) is True
    assert path.read_text() == DOCKER
    assert os.stat(path).st_ino == ino


def test_update_hosts_file_keeps_undecodable_bytes(tmp_path):
    path = tmp_path / "hosts"
    raw = b"127.0.0.1\tlocalhost\n# caf\xe9 (latin-1)\n"
    path.write_bytes(raw)
    assert update_hosts_file(str(path), {"endpoint": "172.17.0.3"}) is True
    assert path.read_bytes() == f"172.17.0.3\tendpoint\t{MARKER}\n".encode() + raw
