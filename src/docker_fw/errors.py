"""Errors, each with the process exit code the CLI maps it to.

The exit codes are documented in the README and in ``docker-fw --help``:

====  =====================================================================
0     success (``replay --dry-run``: nothing would change)
1     ``replay --dry-run``: something would change
2     bad usage or invalid input (nothing was changed)
3     Docker engine problem: unreachable, unknown or stopped container, or a
      container's hosts file docker-fw will not read or write
4     firewall problem: iptables missing, batch rejected, unknown layout,
      iptables-save/-restore past its deadline
5     state store problem: locked by another run, unreadable, damaged or unsafe, disk full
====  =====================================================================
"""


class DockerFwError(Exception):
    """Base class: a message meant for the user (printed through one_line())."""

    exit_code = 2


class UsageError(DockerFwError):
    """The command line or an input file is invalid."""

    exit_code = 2


class EngineError(DockerFwError):
    """The Docker engine could not answer what we need."""

    exit_code = 3


class PortInUseError(EngineError):
    """A start failed because another container (or process) holds a host port."""


class FirewallError(DockerFwError):
    """iptables is missing, refused a batch, or the layout is unknown."""

    exit_code = 4


class StoreError(DockerFwError):
    """The state store is locked, unreadable, damaged, unsafe or not writable."""

    exit_code = 5


EXIT_OK = 0
EXIT_PENDING_CHANGES = 1


# How a character that must not reach a terminal or a log is written instead.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """TEXT as one printable line: every character that is not printable is escaped.

    Messages quote what users, containers and the engine control (names,
    addresses, file lines): a newline there must not forge a second line of
    output or log, a terminal escape must not reach the terminal, and a lone
    surrogate (a non-UTF-8 byte of argv, decoded with surrogateescape) must
    not make ``print`` raise UnicodeEncodeError.  Surrogates U+DC80-U+DCFF are
    shown as the byte they stand for (``\\xff``); printable text, including
    non-ASCII letters, is left as it is.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
