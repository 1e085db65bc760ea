"""hosts: docker-fw's lines in a container's /etc/hosts, rewritten in place."""

from __future__ import annotations

import os

import pytest

from docker_fw import hosts
from docker_fw.hosts import (
    MARKER,
    MAX_BYTES,
    HostsFileError,
    parse_hosts,
    read_hosts,
    render_hosts,
    update_hosts_file,
    write_in_place,
)

# What Docker writes (libnetwork etchosts): its header, a legacy --link line
# for "endpoint" (address, alias, id, name), an --add-host line, and the
# container's own record last.
DOCKER = (
    b"127.0.0.1\tlocalhost\n"
    b"::1\tlocalhost ip6-localhost ip6-loopback\n"
    b"fe00::0\tip6-localnet\n"
    b"ff00::0\tip6-mcastprefix\n"
    b"ff00::1\tip6-allnodes\n"
    b"ff00::2\tip6-allrouters\n"
    b"172.17.0.9\tendpoint 0123456789ab old_endpoint\n"
    b"10.0.0.1\tgateway.example\n"
    b"172.17.0.2\tabcdef012345\n"
)
MARK = MARKER.encode()


def lookup(data: bytes, name: str) -> str | None:
    """glibc's "files" lookup: the first line naming the host, case-insensitively."""
    for address, names in parse_hosts(data):
        if name.lower().encode() in (n.lower() for n in names):
            return address.decode()
    return None


def ours(data: bytes) -> list[str]:
    return [line.decode() for line in data.split(b"\n") if line.endswith(MARK)]


def foreign(data: bytes) -> bytes:
    return b"".join(line for line in data.splitlines(keepends=True) if not line.rstrip().endswith(MARK))


# --- parse_hosts ----------------------------------------------------------------


def test_parse_hosts_skips_comments_and_blank_lines():
    data = b"# header\n\n127.0.0.1 localhost  # trailing\n  ::1\tlocalhost ip6-localhost\n10.0.0.1\n"
    assert parse_hosts(data) == [
        (b"127.0.0.1", [b"localhost"]),
        (b"::1", [b"localhost", b"ip6-localhost"]),
        (b"10.0.0.1", []),
    ]


# --- render_hosts -----------------------------------------------------------------


def test_render_adds_our_lines_sorted_at_the_top():
    out = render_hosts(DOCKER, {"zeta": "172.17.0.5", "alpha": "172.17.0.4"})
    assert out == b"172.17.0.4\talpha\t" + MARK + b"\n172.17.0.5\tzeta\t" + MARK + b"\n" + DOCKER


def test_render_keeps_foreign_lines_byte_for_byte():
    data = b"# written by hand\r\n\n127.0.0.1   localhost\t\n\n  # indented comment\n1.2.3.4 x # not ours: docker-fw\n"
    out = render_hosts(data, {"endpoint": "172.17.0.3"})
    assert foreign(out) == data
    assert out.endswith(data)


def test_render_keeps_bytes_that_are_not_utf8_and_splits_on_newline_only():
    # Written by root in the container: latin-1, a lone continuation byte, NUL,
    # and characters str.splitlines() would take for line ends (\x0b, \x85, U+2028).
    data = b"127.0.0.1\tlocalhost\n# caf\xe9\x80\x00\n10.1.1.1\tx\x0by\x85z\xe2\x80\xa8w\n\xff\xfe"
    out = render_hosts(data, {"endpoint": "172.17.0.3"})
    assert out == b"172.17.0.3\tendpoint\t" + MARK + b"\n" + data
    assert render_hosts(out, {}) == data


def test_our_address_wins_over_a_legacy_link_line():
    # Docker's --link line says 172.17.0.9; glibc takes the first match.
    assert lookup(DOCKER, "endpoint") == "172.17.0.9"
    out = render_hosts(DOCKER, {"endpoint": "172.17.0.3"})
    assert lookup(out, "endpoint") == "172.17.0.3"
    assert lookup(out, "ENDPOINT") == "172.17.0.3"
    # Docker's line is left alone, other names keep resolving as before.
    assert b"172.17.0.9\tendpoint 0123456789ab old_endpoint\n" in out
    assert lookup(out, "old_endpoint") == "172.17.0.9"
    assert lookup(out, "localhost") == "127.0.0.1"
    assert lookup(out, "abcdef012345") == "172.17.0.2"


def test_our_address_wins_over_a_line_appended_after_ours():
    # Docker (or someone) appends a line for the name after our block was written.
    out = render_hosts(DOCKER, {"endpoint": "172.17.0.3"}) + b"172.17.0.99\tendpoint\n"
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
    data = DOCKER + b"172.17.0.3  endpoint " + MARK + b"\n172.17.0.4\tdb\t" + MARK + b"  \n"
    out = render_hosts(data, {"endpoint": "172.17.0.3"})
    assert out == b"172.17.0.3\tendpoint\t" + MARK + b"\n" + DOCKER


def test_render_is_idempotent():
    entries = {"endpoint": "172.17.0.3", "db": "fd00::4"}
    once = render_hosts(DOCKER, entries)
    assert render_hosts(once, entries) == once
    assert len(ours(once)) == 2


def test_empty_entries_remove_our_lines():
    with_ours = render_hosts(DOCKER, {"endpoint": "172.17.0.3"})
    assert render_hosts(with_ours, {}) == DOCKER
    assert render_hosts(DOCKER, {}) == DOCKER
    assert render_hosts(b"", {}) == b""


def test_trailing_newline_is_kept():
    assert render_hosts(b"", {"a": "10.0.0.1"}) == b"10.0.0.1\ta\t" + MARK + b"\n"
    out = render_hosts(b"127.0.0.1 localhost\n", {"a": "10.0.0.1"})
    assert out.endswith(b"localhost\n")
    # a foreign last line without a newline is left as it was
    assert render_hosts(b"127.0.0.1 localhost", {"a": "10.0.0.1"}).endswith(b"localhost")
    # our own last line without a newline is dropped entirely
    assert render_hosts(b"127.0.0.1 localhost\n10.0.0.1\ta\t" + MARK, {}) == b"127.0.0.1 localhost\n"


def test_addresses_are_written_canonically():
    out = render_hosts(b"", {"v6": "FD00:0:0::0004", "v4": "172.17.0.3"})
    assert ours(out) == [f"172.17.0.3\tv4\t{MARKER}", f"fd00::4\tv6\t{MARKER}"]
    assert render_hosts(out, {"v6": "fd00::4", "v4": "172.17.0.3"}) == out


@pytest.mark.parametrize("name", ["my_app.v2-1", "A", "0abc", "web.example.com"])
def test_valid_names(name):
    assert lookup(render_hosts(b"", {name: "10.0.0.1"}), name) == "10.0.0.1"


@pytest.mark.parametrize(
    "name", ["", "/endpoint", "-lead", "_lead", ".lead", "has space", "tab\tname", "new\nline", "a#b", "caf\xe9"]
)
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
        render_hosts(b"", {1: "10.0.0.1"})  # type: ignore[dict-item]


# --- write_in_place / update_hosts_file -----------------------------------------


def write(path, data: bytes) -> None:
    """Overwrite path in place (through update_hosts_file's own way in: the one under test)."""
    fd = os.open(path, os.O_RDWR)
    try:
        write_in_place(fd, data)
    finally:
        os.close(fd)


def test_write_in_place_keeps_the_inode_and_truncates(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(DOCKER)
    before = os.stat(path)
    write(path, b"127.0.0.1\tlocalhost\n")
    after = os.stat(path)
    assert after.st_ino == before.st_ino
    assert (after.st_dev, after.st_nlink) == (before.st_dev, before.st_nlink)
    assert path.read_bytes() == b"127.0.0.1\tlocalhost\n"


def test_update_sees_through_a_second_link(tmp_path):
    # A hard link stands in for the bind mount: both names share one inode,
    # so a rename-based write would leave the other name with the old text.
    path, mount = tmp_path / "hosts", tmp_path / "mounted"
    path.write_bytes(DOCKER)
    os.link(path, mount)
    assert update_hosts_file(str(path), {"new": "10.0.0.1"}) is True
    assert mount.read_bytes() == b"10.0.0.1\tnew\t" + MARK + b"\n" + DOCKER


def test_update_does_not_create_files(tmp_path):
    with pytest.raises(HostsFileError, match="No such file"):
        update_hosts_file(str(tmp_path / "missing"), {"a": "10.0.0.1"})
    assert not (tmp_path / "missing").exists()


def test_write_in_place_writes_everything_in_one_call(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    path.write_bytes(b"x" * 100)
    writes = []
    real_pwrite = os.pwrite

    def counting(fd, data, offset):
        writes.append((len(data), offset))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", counting)
    content = b"y" * 200_000  # far beyond any buffer size
    write(path, content)
    assert writes == [(len(content), 0)]
    assert path.read_bytes() == content


def test_update_hosts_file_changes_only_when_needed(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(DOCKER)
    ino = os.stat(path).st_ino
    assert update_hosts_file(str(path), {"endpoint": "172.17.0.3"}) is True
    assert lookup(path.read_bytes(), "endpoint") == "172.17.0.3"
    mtime = os.stat(path).st_mtime_ns
    assert update_hosts_file(str(path), {"endpoint": "172.17.0.3"}) is False
    assert os.stat(path).st_mtime_ns == mtime
    assert update_hosts_file(str(path), {}) is True
    assert path.read_bytes() == DOCKER
    assert os.stat(path).st_ino == ino


def test_update_hosts_file_keeps_undecodable_bytes(tmp_path):
    path = tmp_path / "hosts"
    raw = b"127.0.0.1\tlocalhost\n# caf\xe9 (latin-1)\n"
    path.write_bytes(raw)
    assert update_hosts_file(str(path), {"endpoint": "172.17.0.3"}) is True
    assert path.read_bytes() == b"172.17.0.3\tendpoint\t" + MARK + b"\n" + raw
    assert read_hosts(str(path)) == path.read_bytes()


# --- hostile files: bounded, no link followed, regular files only -----------------


def refused(path, match: str) -> None:
    """Neither read nor written, with a reason that says why."""
    with pytest.raises(HostsFileError, match=match):
        read_hosts(str(path))
    with pytest.raises(HostsFileError, match=match):
        update_hosts_file(str(path), {"endpoint": "172.17.0.3"})


def test_a_file_at_the_bound_is_read(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(b"#" * (MAX_BYTES - 1) + b"\n")
    assert len(read_hosts(str(path))) == MAX_BYTES


def test_a_file_over_the_bound_is_refused_unread_and_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    with open(path, "wb") as handle:  # sparse: 300 MB of apparent size, no disk used
        handle.truncate(300 << 20)
    reads = []
    monkeypatch.setattr(os, "read", lambda *a: reads.append(a) or b"")
    monkeypatch.setattr(os, "pread", lambda *a: reads.append(a) or b"")
    refused(path, r"larger than 1 MiB, the most docker-fw reads")
    assert reads == []  # the size alone refuses it
    assert os.stat(path).st_size == 300 << 20


def test_a_file_that_grows_past_the_bound_while_read_is_refused(tmp_path, monkeypatch):
    # lstat and fstat said small, then the container kept writing: reading stops at the bound.
    path = tmp_path / "hosts"
    path.write_bytes(b"# small\n")
    real_pread = os.pread
    got = []

    def growing(fd, size, offset):
        with open(path, "ab") as handle:
            handle.write(b"#" * (MAX_BYTES // 2))
        got.append(len(data := real_pread(fd, size, offset)))
        return data

    monkeypatch.setattr(os, "pread", growing)
    with pytest.raises(HostsFileError, match="larger than 1 MiB"):
        read_hosts(str(path))
    assert sum(got) == MAX_BYTES + 1  # not a byte more than needed to know


def test_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(DOCKER)
    (tmp_path / "hosts").symlink_to(target)
    refused(tmp_path / "hosts", "a symbolic link")
    assert target.read_bytes() == DOCKER


def test_a_symlink_on_the_way_is_not_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "hosts").write_bytes(DOCKER)
    (tmp_path / "container").symlink_to(real)
    refused(tmp_path / "container" / "hosts", "container on its path is a symbolic link")
    assert (real / "hosts").read_bytes() == DOCKER


def test_a_fifo_is_refused_without_blocking(tmp_path):
    # No writer ever opens it: a plain open() for reading would block forever.
    path = tmp_path / "hosts"
    os.mkfifo(path)
    refused(path, "a FIFO")


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "hosts").mkdir()
    refused(tmp_path / "hosts", "a directory")


def test_a_device_is_refused():
    refused("/dev/null", "a character device")


@pytest.mark.parametrize("path", ["hosts", "", "/a/../etc/passwd", "/a/./hosts", "//hosts", "/a//hosts", "/a/", "/a\0b", None])
def test_paths_that_are_not_absolute_and_normalised_are_refused(path):
    refused(path, "^not an absolute, normalised path$")


def test_shown_keeps_a_message_on_one_line():
    assert hosts.shown("/var/lib/docker/containers/abc/hosts") == "/var/lib/docker/containers/abc/hosts"
    assert "\n" not in hosts.shown("/x\ny")
