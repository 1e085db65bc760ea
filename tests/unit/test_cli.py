"""cli: argument errors (exit 2) before anything is touched; an unreachable engine (exit 3)."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import threading

import pytest

from docker_fw.errors import EngineError, UsageError
from docker_fw.backends.iptables.process import Iptables


class _LazyCli:
    """docker_fw.cli, imported on first use: an import error fails the tests that
    need it instead of stopping the whole collection."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("docker_fw.cli"), name)


cli = _LazyCli()


class Run:
    def __init__(self, code: int, out: list[str], err: list[str]):
        self.code, self.out, self.err = code, out, err

    @property
    def message(self) -> str:
        assert len(self.err) == 1, self.err
        line = self.err[0]
        assert "\n" not in line.strip(), line
        assert "Traceback" not in line
        return line


@pytest.fixture
def env(tmp_path, monkeypatch):
    """No engine, a state directory that does not exist yet, and no iptables."""
    state = tmp_path / "state"
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(state))

    def no_firewall(*args, **kwargs):
        raise AssertionError("iptables must not be run by this test")

    monkeypatch.setattr(Iptables, "save", no_firewall)
    monkeypatch.setattr(Iptables, "restore", no_firewall)
    return state


def run(argv: list[str]) -> Run:
    out: list[str] = []
    err: list[str] = []
    code = cli.run(argv, out=out.append, err=err.append)
    return Run(code, out, err)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["add", "web", "--dport", "80"], "--source is mandatory"),
        (["add-internal", "web", "--dest", "db", "--dport", "80"], "--source is mandatory"),
        (["add", "--source", "1.2.3.4"], "name a container"),
        (["add", "web", "--source", "1.2.3.4", "--dport", "http"], "--dport: not a port number"),
        (["add", "web", "--source", "1.2.3.4", "--dport", "70000"], "--dport: port out of range"),
        (["add", "web", "--source", "1.2.3.4", "--sport", "0"], "--sport: port out of range"),
        (["add", "web", "--source", "1.2.3.4", "--protocol", "gre"], "invalid choice: 'gre'"),
        (["add", "web", "--source", "1.2.3.4", "-p", "icmpv6"], "invalid choice: 'icmpv6'"),
        (["add", "web", "--source", "1.2.3.4", "--dport", "90:80"], "--dport: range 90:80 runs backwards"),
        (["add", "web", "--source", "1.2.3.4", "--dport", ",".join(map(str, range(1, 17)))],
         "multiport match takes at most 15"),
        (["add", "web", "--source", "1.2.3.4", "--dport", "1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16"],
         "names 16 ports (a range counts two)"),
        (["add", "web", "--source", "1.2.3.4", "-p", "icmp", "--dport", "80"], "--protocol=icmp has no ports"),
        (["add", "web", "--source", "1.2.3.4", "--icmp-type", "echo-request"], "--icmp-type needs --protocol=icmp"),
        (["add", "web", "--source", "1.2.3.4", "-p", "icmp", "--icmp-type", "bogus"], "--icmp-type: 'bogus' is neither"),
        (["add", "web", "--source", "1.2.3.4", "-p", "icmp", "--icmp-type", "256"], "--icmp-type: '256' is neither"),
        (["add", "web", "--source", "2001:db8::1", "-p", "icmp"], "ICMPv6 (ip6tables' own protocol"),
        (["egress", "web", "block"], "invalid choice: 'block'"),
        (["egress", "web"], "required: policy"),
        (["add", "web", "--source", "1.2.3.4", "--filter", "-j ACCEPT"], "may only hold match conditions"),
        (["add", "web", "--source", ""], "empty address"),
        (["add-input", "web", "--source", ".", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate", "web"], "invalid choice: 'frobnicate'"),
        (["drop"], "required: container"),
        (["allow", "web"], "required: address"),
    ],
)
def test_argument_errors(env, argv, needle):
    result = run(argv)
    assert result.code == 2
    assert needle in result.message
    assert result.message.startswith("docker-fw")
    assert result.out == []
    assert not env.exists(), "the state store was touched"


def test_error_message_names_the_action(env):
    result = run(["add", "web", "--dport", "80"])
    assert result.message == "docker-fw add: --source is mandatory"


@pytest.mark.parametrize("option", [["--source", "1.2.3.4"], ["--dport", "80"], ["--protocol", "udp"], ["--filter", "-i eth0"]])
def test_from_cannot_be_combined_with_rule_options(env, tmp_path, option):
    rules = tmp_path / "rules.txt"
    rules.write_text("web --source 1.2.3.4 --dport 80\n")
    result = run(["add", "--from", str(rules), *option])
    assert result.code == 2
    assert "with --from, no container or rule option may be given" in result.message
    assert option[0] in result.message
    assert not env.exists()


def test_from_cannot_be_combined_with_a_container(env, tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("web --source 1.2.3.4 --dport 80\n")
    result = run(["add", "web", "--from", str(rules)])
    assert result.code == 2
    assert "with --from" in result.message
    assert not env.exists()


@pytest.mark.parametrize(
    "bad_line, needle",
    [
        ("web --source 1.2.3.4 --dport eighty", "--dport: not a port number"),
        ("web --dport 80", "--source is mandatory"),
        ("web --source 1.2.3.4 --protocol gre", "invalid choice"),
        ("web --source '1.2.3.4", "closing quotation"),
        ("add-internal web --source db --dport 80", "this line is for add-internal, not add"),
        ("web --source 1.2.3.4 --filter '-j ACCEPT'", "may only hold match conditions"),
    ],
)
def test_from_file_with_a_bad_line_names_file_and_line(env, tmp_path, bad_line, needle):
    rules = tmp_path / "rules.txt"
    rules.write_text(
        "# recorded rules\n"
        "web --source 203.0.113.0/24 --dport 80\n"
        "\n"
        f"{bad_line}\n"
        "web --source 198.51.100.1 --dport 443\n"
    )
    result = run(["add", "--from", str(rules)])
    assert result.code == 2
    assert f"{rules} line 4: " in result.message
    assert needle in result.message
    assert not env.exists()


def test_from_missing_file(env, tmp_path):
    result = run(["add", "--from", str(tmp_path / "nope.txt")])
    assert result.code == 2
    assert "nope.txt" in result.message
    assert not env.exists()


def test_from_file_without_rules(env, tmp_path):
    rules = tmp_path / "empty.txt"
    rules.write_text("# nothing\n\n   \n")
    result = run(["add-internal", "--from", str(rules)])
    assert result.code == 2
    assert "no rules in input" in result.message


# --- --filter ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, needle",
    [
        # a byte that is not UTF-8, as Python decodes argv: refused as an argument, before parsing
        ("-i eth\udce9", "argument 5 is not UTF-8 text: '--filter=-i eth\\xe9'"),
        ("-i eth0 !", "'!' at the end"),
        ("-fjACCEPT", "'-fjACCEPT' is not allowed"),
        ("-6", "'-6' is not allowed"),
        ("-m conntrack --ctstate " + ",".join(["NEW"] * 3000), "too long"),
    ],
)
def test_filter_outside_the_grammar_is_one_line_exit_2(env, text, needle):
    result = run(["add", "web", "--source", "1.2.3.4", f"--filter={text}"])
    assert result.code == 2
    assert needle in result.message
    assert result.message.isascii() and result.message.isprintable()
    assert not env.exists(), "the state store was touched"


def test_filter_help_names_the_supported_set_and_the_bounds(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["add", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "At most 512 characters and 64 words, printable ASCII" in text
    for module in ("addrtype", "connlimit", "conntrack", "iprange", "length", "limit", "mac", "recent",
                   "state", "string", "tcp", "ttl"):
        assert f"-m {module} " in text


def test_filter_byte_that_is_not_utf8_from_the_real_argv(env, tmp_path):
    """The way a shell passes it: Python decodes argv with surrogateescape."""
    import os
    import pathlib
    import subprocess
    import sys

    import docker_fw

    src = pathlib.Path(docker_fw.__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "docker_fw", "add", "web", "--source", "1.2.3.4", "--dport", "80", b"--filter=-i eth\xe9"],
        capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(src), "LC_ALL": "C.UTF-8"},
    )
    assert proc.returncode == 2, proc
    assert proc.stdout == b""
    assert proc.stderr.decode("ascii").splitlines() == [
        "docker-fw: argument 7 is not UTF-8 text: '--filter=-i eth\\xe9'"
    ]
    assert not env.exists()


def test_unreachable_engine_is_exit_3(env):
    result = run(["add", "web", "--source", "203.0.113.0/24", "--dport", "80"])
    assert result.code == 3
    assert result.message.startswith("docker-fw add: cannot reach the Docker engine")
    assert result.out == []


def test_unreachable_engine_for_init_is_exit_3(env):
    result = run(["init"])
    assert result.code == 3
    assert "cannot reach the Docker engine" in result.message


# --- read_from -----------------------------------------------------------------------


def test_read_from_skips_comments_and_blank_lines_and_takes_ls_lines(tmp_path):
    path = tmp_path / "rules.txt"
    path.write_text(
        "# a comment\n"
        "\n"
        "   # an indented comment\n"
        "web --source 203.0.113.0/24 --dport 80\n"
        "docker-fw add web --source=198.51.100.7 --dest=. --dport=443 --protocol=tcp --filter='! -i docker0 -o docker0'\n"
        "   \n"
        "add db -s 192.0.2.0/24 -d . --sport 1024 --dport 5432 -p udp\n"
        "docker-fw add web2 --source=. --dest=192.0.2.9 --protocol=tcp --filter='-m string --string '\"'\"'a b'\"'\"' --algo bm'\n"
    )
    requests = cli.read_from(str(path), "add")
    assert [(r.container, r.source, r.dest, r.sport.text, r.dport.text, r.proto, r.filter) for r in requests] == [
        ("web", "203.0.113.0/24", ".", "", "80", "tcp", ()),
        ("web", "198.51.100.7", ".", "", "443", "tcp", ("!", "-i", "docker0", "-o", "docker0")),
        ("db", "192.0.2.0/24", ".", "1024", "5432", "udp", ()),
        ("web2", ".", "192.0.2.9", "", "", "tcp", ("-m", "string", "--string", "a b", "--algo", "bm")),
    ]
    assert [r.where for r in requests] == [f"{path} line {n}" for n in (4, 5, 7, 8)]


def test_read_from_refuses_a_line_for_another_action(tmp_path):
    path = tmp_path / "rules.txt"
    path.write_text("web --source 203.0.113.0/24 --dport 80\ndocker-fw add-input web --source=. --dest=/ --dport=53\n")
    with pytest.raises(UsageError) as info:
        cli.read_from(str(path), "add")
    assert str(info.value) == f"{path} line 2: this line is for add-input, not add"


def test_read_from_stdin():
    stdin = io.StringIO("# from a pipe\nweb --source db --dport 5432\n")
    requests = cli.read_from("-", "add-internal", stdin=stdin)
    assert [(r.container, r.source, r.dport.text, r.where) for r in requests] == [("web", "db", "5432", "stdin line 2")]


def test_read_from_stdin_error_names_stdin():
    with pytest.raises(UsageError, match="^stdin line 1: --dport: port out of range"):
        cli.read_from("-", "add", stdin=io.StringIO("web --source 1.2.3.4 --dport 0\n"))


def test_read_from_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "rules.bin"
    path.write_bytes(b"web --source 203.0.113.1\nweb --source \xff\xfe\n")
    with pytest.raises(UsageError) as info:
        cli.read_from(str(path), "add")
    assert str(info.value) == f"{path} line 2: not UTF-8 text (byte 0xff at offset 13)"


# --- --from is read bounded, split on '\n' only, and refuses control characters ------------------


@pytest.mark.parametrize(
    "text, number, char",
    [
        # str.splitlines() took each of these for a line break: the rule behind the
        # comment was applied (\x0b, \x0c, \x1c, \x85, U+2028, U+2029).
        ("# old rule\x0bweb --source 203.0.113.9 --dport 22\n", 1, "000B"),
        ("web --source 203.0.113.1\n# note\x0cweb --source 203.0.113.9\n", 2, "000C"),
        ("# a\x1cweb --source 203.0.113.9\n", 1, "001C"),
        ("# a\x85web --source 203.0.113.9\n", 1, "0085"),
        ("# a\u2028web --source 203.0.113.9\n", 1, "2028"),
        ("web --source 203.0.113.1\n\n# a\u2029web --source 203.0.113.9\n", 3, "2029"),
        ("web --source 203.0.113.1 --dport 80\r\n", 1, "000D"),
        ("web --source 203.0.113.1\x00 --dport 80\n", 1, "0000"),
        ("web --source 203.0.113.1 --filter '-i \x1b[2Jeth0'\n", 1, "001B"),
    ],
)
def test_read_from_refuses_control_characters_with_the_line_number(tmp_path, text, number, char):
    path = tmp_path / "rules.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(UsageError) as info:
        cli.read_from(str(path), "add")
    assert str(info.value) == f"{path} line {number}: holds a control or unprintable character (U+{char})"


def test_read_from_takes_tabs_as_whitespace(tmp_path):
    path = tmp_path / "rules.txt"
    path.write_text("web\t--source 203.0.113.1\t--dport 80\n")
    assert [(r.container, r.source, r.dport.text) for r in cli.read_from(str(path), "add")] == [("web", "203.0.113.1", "80")]


def test_from_dev_zero_is_refused_before_reading(env):
    result = run(["add", "--from", "/dev/zero"])
    assert result.code == 2
    assert result.message == "docker-fw add: --from /dev/zero: not a regular file or a pipe"
    assert not env.exists()


def test_from_a_directory_is_refused(env, tmp_path):
    result = run(["add", "--from", str(tmp_path)])
    assert result.code == 2
    assert result.message == f"docker-fw add: --from {tmp_path}: Is a directory"


def test_from_a_file_larger_than_the_limit_is_refused(env, tmp_path):
    path = tmp_path / "big.txt"
    line = b"web --source 203.0.113.1 --dport 80\n"
    path.write_bytes(line * (cli.FROM_MAX_BYTES // len(line) + 1))
    result = run(["add", "--from", str(path)])
    assert result.code == 2
    assert result.message == f"docker-fw add: --from {path}: larger than 16 MiB (the limit)"
    assert not env.exists()


def test_from_more_lines_than_the_limit_is_refused(env, tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"#\n" * (cli.FROM_MAX_LINES + 1))
    result = run(["add", "--from", str(path)])
    assert result.code == 2
    assert result.message == f"docker-fw add: --from {path}: more than 100,000 lines (the limit)"


def test_from_the_line_limit_itself_is_read(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"#\n" * (cli.FROM_MAX_LINES - 1) + b"web --source 203.0.113.1")
    assert [r.where for r in cli.read_from(str(path), "add")] == [f"{path} line {cli.FROM_MAX_LINES}"]


def _endless_writer(path_or_fd, chunk: bytes) -> threading.Thread:
    """A thread writing CHUNK to a FIFO (or pipe) until the reader goes away."""

    def write():
        with contextlib.suppress(BrokenPipeError, OSError):
            with open(path_or_fd, "wb", buffering=0) as handle:
                while True:
                    handle.write(chunk)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_from_a_fifo_that_never_ends_is_refused_after_the_limit(env, tmp_path, monkeypatch):
    monkeypatch.setattr("docker_fw.cli.FROM_MAX_BYTES", 1 << 20)  # the same code path, sooner
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)
    writer = _endless_writer(str(fifo), b"# ever more\n" * 1000)
    result = run(["add", "--from", str(fifo)])
    assert result.code == 2
    assert result.message == f"docker-fw add: --from {fifo}: larger than 1 MiB (the limit)"
    writer.join(timeout=30)
    assert not writer.is_alive()


def test_endless_stdin_is_refused_after_the_limit(monkeypatch):
    monkeypatch.setattr("docker_fw.cli.FROM_MAX_BYTES", 1 << 20)
    read_fd, write_fd = os.pipe()
    writer = _endless_writer(write_fd, b"web --source 203.0.113.1\n" * 1000)
    with open(read_fd, "rb") as stdin:
        with pytest.raises(UsageError, match=r"^--from -: larger than 1 MiB \(the limit\)$"):
            cli.read_from("-", "add", stdin=stdin)
    writer.join(timeout=30)
    assert not writer.is_alive()


# --- every message is one line ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["add", "web\nx", "--source", "1.2.3.4"], "argument 2 holds a control or unprintable character (U+000A): 'web\\nx'"),
        (["add", "web", "--source", "1.2.3.4\r\ndocker-fw: forged"], "(U+000D)"),
        (["drop", "web\x1b[2J"], "(U+001B): 'web\\x1b[2J'"),
        (["add", "web\udcffx", "--source", "1.2.3.4"], "argument 2 is not UTF-8 text: 'web\\xffx'"),
        (["ls", "\udcc3\udca9"], "argument 2 is not UTF-8 text: '\\xc3\\xa9'"),
        (["add", "web", "--source", "1.2.3.4", "--bogus\nline"], "U+000A"),
    ],
)
def test_arguments_with_newlines_or_undecodable_bytes_are_refused_in_one_line(env, argv, needle):
    result = run(argv)
    assert result.code == 2
    assert needle in result.message
    assert result.message.isprintable()
    assert not env.exists(), "the state store was touched"


def test_a_name_with_a_newline_from_the_real_command_line_gives_one_line(env):
    """As a shell passes it: docker-fw add $'web\\nx' (a \\xff byte: the --filter test above)."""
    proc = subprocess.run(
        [sys.executable, "-m", "docker_fw", "add", "web\nx", "--source", "1.2.3.4"], capture_output=True, timeout=60,
    )
    assert proc.returncode == 2, proc
    assert proc.stdout == b""
    assert proc.stderr == b"docker-fw: argument 2 holds a control or unprintable character (U+000A): 'web\\nx'\n"
    assert not env.exists()


class _HostileEngine:
    """Stands for engine.Engine: every lookup fails with a message holding what a
    hostile engine (or container) controls: newlines, escapes, undecodable bytes."""

    def __init__(self, *args, **kwargs):
        pass

    def snapshot(self, refresh: bool = False):
        raise EngineError("no such container: web\ndocker-fw: forged line\x1b[2J\udcff")


def test_engine_messages_are_printed_as_one_line(env, capfd):
    code = cli.run(  # the real writers: stderr
        ["add", "web", "--source", "203.0.113.1"], backends=lambda verbose: (_HostileEngine(), Iptables(), None)
    )
    assert code == 3
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == "docker-fw add: no such container: web\\ndocker-fw: forged line\\x1b[2J\\xff\n"


def test_warnings_and_output_are_printed_one_line_each(tmp_path, monkeypatch):
    """A warning built from engine data (a container's name) and an output line
    (check's foreign rule, as iptables-save printed it) each stay one line."""
    from fakes import FakeEngine, FakeFirewall
    from docker_fw.backends.iptables.process import SavedRule

    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "state"))
    engine = FakeEngine(tmp_path / "engine")
    engine.add("web", state="running")
    firewall = FakeFirewall()
    out: list[str] = []
    err: list[str] = []

    def backends(verbose):
        engine.forget()
        return engine, firewall, None

    assert cli.run(["add", "web", "--source", "203.0.113.1"], out=out.append, err=err.append, backends=backends) == 0
    assert err == ["docker-fw: warning: 'docker-fw init' has not been run: Docker's catch-all rule still lets "
                   "anyone reach published ports"]
    firewall.table.rules.append(SavedRule("DOCKER-FW-INPUT", ("-s", "10.0.0.1/32"), "-A DOCKER-FW-INPUT x\ny\udcff"))
    out.clear()
    assert cli.run(["check"], out=out.append, err=err.append, backends=backends) == 1
    assert "foreign rule in DOCKER-FW-INPUT: -A DOCKER-FW-INPUT x\\ny\\xff" in out
    assert all(line.isprintable() for line in out + err)


# --- checks that need no engine are made before it is asked ---------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["add", "web", "--source", "1.2.3.4.5", "--dport", "80"], "invalid IPv4"),
        (["add", "web", "--source", "::1", "--dport", "80"], "IPv6"),
        (["add", "web", "--source", "bad name!", "--dport", "80"], "invalid address specification"),
        (["add", "web", "--source", "203.0.113.1", "--dest", "10.0.0.0/33"], "invalid IPv4"),
        (["add-internal", "web", "--source", "db"], "--dport is mandatory"),
        (["add-input", "web", "--source", ".", "--dest", "/"], "--dport is mandatory"),
        (["add", "web", "--source", ".", "--dest", "."], "same"),
        (["allow", "web", "1.2.3.4.5"], "invalid IPv4"),
        (["allow", "web", "db"], "allow takes IPv4 addresses"),
        (["add-two-ways", "web", "--source", "203.0.113.1", "--dport", "80"], "add-two-ways needs --source to be another container"),
        (["add-two-ways", "web", "--source", ".", "--dport", "80"], "same"),
        (["add-two-ways", "web", "--source", "db"], "--dport is mandatory"),
    ],
)
def test_static_checks_come_before_the_engine(env, argv, needle):
    result = run(argv)
    assert result.code == 2
    assert needle in result.message
    assert not env.exists(), "the state store was touched"


def test_from_file_bad_address_is_a_usage_error(env, tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("web --source 203.0.113.0/24 --dport 80\nweb --source 203.0.113.999 --dport 80\n")
    result = run(["add", "--from", str(rules)])
    assert result.code == 2
    assert f"{rules} line 2: " in result.message and "invalid IPv4" in result.message
    assert not env.exists()


def test_verbose_after_the_action():
    assert cli.build_parser().parse_args(["replay", "-v"]).verbose is True
    assert cli.build_parser().parse_args(["replay"]).verbose is False


@pytest.mark.parametrize("argv", [["-v", "replay"], ["--verbose", "init"], ["-v", "add", "web", "-s", "1.2.3.4"]])
def test_verbose_before_the_action(argv):
    assert cli.build_parser().parse_args(argv).verbose is True


def test_output_with_bytes_read_from_iptables_save_prints(tmp_path):
    """A foreign rule's comment or interface name may hold a byte that is not
    UTF-8 (kept as a surrogate): main() prints it escaped instead of crashing."""
    code = (
        "from docker_fw import cli\n"
        "cli.run = lambda argv, out=None, err=None: print('foreign rule: -i x\\udcffy') or 0\n"
        "cli.main()\n"
    )
    strict = {"PYTHONIOENCODING": "utf-8:strict", "PATH": "/usr/bin:/bin"}  # stdout as under en_US.UTF-8
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=strict, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"foreign rule: -i x\\udcffy\n"


# --- the command table ------------------------------------------------------------------------


def test_every_action_has_one_command_and_every_command_an_action():
    parser = cli.build_parser()
    actions = next(a for a in parser._actions if a.dest == "action").choices
    assert set(cli.COMMANDS) == set(actions)


@pytest.mark.parametrize(
    "argv, reads_only",
    [
        (["ls"], True), (["check"], True), (["replay", "--dry-run"], True), (["start", "--dry-run", "web"], True),
        (["replay"], False), (["start", "web"], False), (["gc", "--dry-run"], False), (["init"], False),
        (["add", "web", "-s", "1.2.3.4"], False), (["allow", "web", "1.2.3.4"], False), (["drop", "web"], False),
        (["rename", "a", "b"], False), (["save-hostconfig", "web"], False),
    ],
)
def test_the_commands_that_open_the_store_read_only(argv, reads_only):
    args = cli.build_parser().parse_args(argv)
    assert cli.COMMANDS[args.action].reads_only(args) is reads_only


class _AwayEngine:
    """Stands for engine.Engine when the engine cannot be reached: every call
    fails as engine.Engine's do (EngineError)."""

    def __getattr__(self, name):
        raise EngineError(f"cannot reach the engine (asked for {name})")


def test_a_command_that_needs_no_engine_runs_without_one(tmp_path, monkeypatch):
    from fakes import FakeEngine, FakeFirewall

    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "state"))
    engine = FakeEngine(tmp_path / "engine")
    engine.add("web", state="running")
    firewall = FakeFirewall()
    out: list[str] = []
    assert cli.run(["add", "web", "--source", "203.0.113.1"], out=out.append, err=lambda _: None,
                   backends=lambda verbose: (engine, firewall, None)) == 0
    no_engine = [name for name, command in cli.COMMANDS.items() if not command.needs_engine]
    assert no_engine == ["ls"]
    out.clear()
    err: list[str] = []
    assert cli.run(["ls", "web"], out=out.append, err=err.append,
                   backends=lambda verbose: (_AwayEngine(), firewall, None)) == 0
    assert out == ["docker-fw add web --source=203.0.113.1 --dest=. --protocol=tcp"]
    # the labels' rules are the engine's: said to be left out, not silently missing
    assert err == ["docker-fw: warning: rules of containers' docker-fw.rules labels not listed: "
                   "cannot reach the engine (asked for snapshot)"]


def test_a_from_file_named_like_the_program_still_gets_the_action_in_front(env, tmp_path, monkeypatch):
    """Only argparse's own messages start with the program's name: a message that
    starts with a file's (or a container's) name 'docker-fw...' is still prefixed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docker-fw.rules").write_text("web --dport 80\n")
    result = run(["add", "--from", "docker-fw.rules"])
    assert result.code == 2
    assert result.message == "docker-fw add: docker-fw.rules line 1: --source is mandatory"
    assert not env.exists()


def test_from_line_errors_that_need_the_engine_name_their_line(tmp_path, monkeypatch):
    """Checked by the service against the engine: a stopped container (exit 3) and a
    container's own address (exit 2), each named by its file and line; nothing recorded."""
    from fakes import FakeEngine, FakeFirewall

    monkeypatch.setenv("DOCKER_FW_STATE_DIR", str(tmp_path / "state"))
    engine = FakeEngine(tmp_path / "engine")
    engine.add("web", state="running", ips={"bridge": "172.17.0.10"})
    engine.add("old", state="exited")
    firewall = FakeFirewall()
    rules = tmp_path / "rules.txt"
    for line, code, needle in [
        ("old --source 203.0.113.1", 3, f"docker-fw add: {rules} line 2: "),
        ("web --source 172.17.0.10", 2, f"docker-fw add: {rules} line 2: 172.17.0.10 is a container network address"),
    ]:
        rules.write_text(f"web --source 203.0.113.1\n{line}\n")
        err: list[str] = []
        assert cli.run(["add", "--from", str(rules)], out=lambda _: None, err=err.append,
                       backends=lambda verbose: (engine, firewall, None)) == code
        assert len(err) == 1 and err[0].startswith(needle), err
    assert cli.run(["ls"], out=err.append, backends=lambda verbose: (engine, firewall, None)) == 0
    assert err[-1].startswith(f"docker-fw add: {rules} line 2")  # ls printed nothing


def test_ls_loads_neither_the_service_layer_nor_a_firewall_backend(tmp_path):
    """Command.needs_engine False: run() gives 'ls' a listing.Records, so a whole
    'docker-fw ls' process never imports what it would not use; it asks the
    engine (engine.py, over the socket) for the rules of containers' labels only."""

    code = (
        "import sys\n"
        "from docker_fw import cli\n"
        "assert cli.run(['ls']) == 0\n"
        "print(' '.join(m for m in ('docker_fw.actions', 'docker_fw.service.core', 'docker_fw.backends',"
        " 'docker_fw.engine', 'docker_fw.resolve', 'docker_fw.transaction') if m in sys.modules))\n"
    )
    env = {**os.environ, "DOCKER_FW_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "docker_fw.engine"


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h", "ls"], [], ["-v"], ["bogus"], ["ls", "--help"], ["add", "--help"], ["-v", "replay", "--dry-run"],
    ["add", "web", "-s", "203.0.113.1", "--dport", "80"], ["check", "-v"], ["init", "--network", "a"], ["gc", "--days", "x"],
])
def test_the_parser_built_for_one_argv_does_what_the_whole_parser_does(argv, capsys):
    """build_parser(argv) builds only the sub-parser ARGV names (or, for none,
    lists every action): the same parse, the same help, the same errors."""
    results = []
    for parser in (cli.build_parser(), cli.build_parser(argv)):
        try:
            results.append(("parsed", vars(parser.parse_args(argv))))
        except (SystemExit, cli.ParserError) as exc:
            results.append(("exit", str(exc)))
        results.append(capsys.readouterr())
    assert results[0] == results[2] and results[1] == results[3]


def test_the_main_help_lists_every_action_with_its_summary(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser(["--help"]).parse_args(["--help"])
    shown = capsys.readouterr().out
    assert all(f"    {name}" in shown for name in cli.COMMANDS)
    assert "print recorded rules and egress" in shown


# Modules a cheap action must not load (issue #10: every run is a new process and
# pays for each): the standard library's costly ones docker-fw replaced (typing:
# values.py; socket, hashlib: lean.py; urllib.parse: lean.percent_encoded;
# shutil: rulegrammar.Parser's formatter width; dataclasses: values.py;
# subprocess: deadline.run_bounded imports it), the
# docker SDK, and docker-fw's modules of other actions.
_NEVER_FOR_A_SINGLE_ACTION = (
    "dataclasses", "inspect", "socket", "hashlib", "docker", "requests", "urllib3", "http.client",
    "docker_fw.graph", "docker_fw.metrics", "docker_fw.blocklog", "docker_fw.explain", "docker_fw.watch",
    "docker_fw.backends.nftables", "docker_fw.legacy_import",
)
_NEVER_FOR_HELP_OR_LS = ("typing", "shutil", "urllib.parse", "subprocess", "docker_fw.actions")


@pytest.mark.parametrize("argv, forbidden", [
    (["--help"], _NEVER_FOR_A_SINGLE_ACTION + _NEVER_FOR_HELP_OR_LS + ("docker_fw.store", "docker_fw.engine")),
    (["add", "--help"], _NEVER_FOR_A_SINGLE_ACTION + _NEVER_FOR_HELP_OR_LS + ("docker_fw.store", "docker_fw.engine")),
    (["ls"], _NEVER_FOR_A_SINGLE_ACTION + _NEVER_FOR_HELP_OR_LS),
])
def test_help_and_ls_load_no_heavy_module(argv, forbidden, tmp_path):
    """A whole 'docker-fw --help' or 'ls' process, as users start it."""
    code = (
        "import sys\n"
        "from docker_fw import cli\n"
        f"try:\n    cli.run({argv!r}, out=lambda s: None, err=lambda s: None)\n"
        "except SystemExit:\n    pass\n"
        f"print(' '.join(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "DOCKER_FW_STATE_DIR": str(tmp_path / "state"), "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.splitlines()[-1]  # after --help's text
    assert loaded == "", f"{argv} loaded {loaded}"


@pytest.mark.parametrize("argv", [["add", "web", "--source", "203.0.113.1", "--dport", "80"], ["replay"],
                                  ["add", "--from", "-"]])
def test_add_and_replay_load_no_module_of_another_action(argv, tmp_path):
    """'add' and 'replay' on the iptables backend, in a process of their own
    (the fakes' own imports, such as dataclasses, are taken before the run)."""
    code = (
        "import sys, io\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from fakes import FakeEngine, FakeFirewall\n"
        "from docker_fw import cli\n"
        "before = set(sys.modules)\n"
        f"engine = FakeEngine({str(tmp_path / 'engine')!r})\n"
        "engine.add('web', state='running')\n"
        "firewall = FakeFirewall()\n"
        "sys.stdin = io.StringIO('web --source 203.0.113.2\\n')\n"
        f"code = cli.run({argv!r}, out=lambda s: None, backends=lambda verbose: (engine, firewall, None))\n"
        "assert code == 0, code\n"
        f"print(' '.join(m for m in {_NEVER_FOR_A_SINGLE_ACTION!r} if m in sys.modules and m not in before))\n"
    )
    env = {**os.environ, "DOCKER_FW_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{argv} loaded {done.stdout.strip()}"
