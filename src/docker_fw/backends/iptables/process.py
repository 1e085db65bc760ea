"""iptables through iptables-save / iptables-restore: the one process runner.

Nothing else in docker-fw starts processes for the firewall.  Rules are never
passed through a shell: a batch is written to iptables-restore's standard
input, and iptables-restore applies a table's batch atomically (one failing
line and nothing of it is applied).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from ...values import dataclass, field

from ...deadline import run_bounded, seconds_from_env
from ...errors import FirewallError

# How long one iptables-save or iptables-restore may take (seconds); past it
# the process (and its process group) is killed.  iptables-restore --wait
# waits for the xtables lock within this time too.
TIMEOUT_ENV = "DOCKER_FW_IPTABLES_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SavedRule:
    """One '-A CHAIN ...' line of iptables-save output."""

    chain: str
    args: tuple[str, ...]  # after '-A CHAIN'
    line: str  # as printed
    position: int = 0  # 1-based, within its chain

    @property
    def comment(self) -> str | None:
        args = self.args
        for i, token in enumerate(args[:-1]):
            if token == "--comment":
                return args[i + 1]
        return None

    def target(self) -> str | None:
        for i, token in enumerate(self.args[:-1]):
            if token in ("-j", "-g"):
                return self.args[i + 1]
        return None


@dataclass
class Table:
    """A parsed table of iptables-save output."""

    name: str
    chains: dict[str, str] = field(default_factory=dict)  # name -> policy ('-' for user chains)
    rules: list[SavedRule] = field(default_factory=list)

    def chain_rules(self, chain: str) -> list[SavedRule]:
        return [r for r in self.rules if r.chain == chain]

    def has_rule(self, chain: str, *args: str) -> bool:
        return any(r.chain == chain and r.args == args for r in self.rules)


def parse_save(text: str, table: str = "filter") -> Table:
    """Parse one table out of iptables-save output (other tables are skipped).

    Lines end at '\\n' only: str.splitlines() also splits on '\\x0b', '\\x85'
    and U+2028, which an interface name or a comment may hold.
    """
    result = Table(table)
    positions: dict[str, int] = {}
    current = None
    for raw in text.split("\n"):
        line = raw.strip(" ")
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = line[1:]
            continue
        if current != table:
            continue
        if line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            result.chains[name] = rest.split(" ", 1)[0] if rest else "-"
        elif line.startswith("-A "):
            tokens = split_saved(line)
            chain = tokens[1]
            positions[chain] = positions.get(chain, 0) + 1
            result.rules.append(
                SavedRule(chain=chain, args=tuple(tokens[2:]), line=line, position=positions[chain])
            )
    return result


# Options whose value iptables-save prints as it is (save_iface: "-i %s"),
# never quoted: an interface name may hold '"', '\\' or '#' (anything but
# '/', ':', NUL and white space), so a '"' there is part of the name.
_RAW_VALUE_OPTIONS = frozenset({"-i", "-o", "--physdev-in", "--physdev-out"})


def split_saved(line: str) -> list[str]:
    """Split a rule exactly as iptables-save prints it (not shell syntax).

    Tokens are separated by spaces.  Strings that may hold anything
    (--comment, --log-prefix: xtables_save_string; --string) are printed in
    double quotes, with '"', '\\' and "'" escaped by a backslash; such a
    token starts with '"' and its closing quote ends it.  Interface names are
    printed raw, quotes and backslashes included.  A '"' that does not open a
    well-formed quoted token (a raw value some extension printed) is taken
    as it is.
    """
    if '"' not in line:
        return [token for token in line.split(" ") if token]  # nothing quoted: the same tokens
    tokens: list[str] = []
    raw_value = False
    at, end = 0, len(line)
    while at < end:
        if line[at] == " ":
            at += 1
            continue
        if line[at] == '"' and not raw_value:
            quoted = _read_quoted(line, at)
            if quoted is not None:
                value, at = quoted
                tokens.append(value)
                continue
        stop = line.find(" ", at)
        stop = end if stop < 0 else stop
        token = line[at:stop]
        tokens.append(token)
        raw_value = not raw_value and token in _RAW_VALUE_OPTIONS
        at = stop
    return tokens


def _read_quoted(line: str, start: int) -> tuple[str, int] | None:
    """The value of the quoted token at START and the index after it; None when
    the quote is not closed, or not followed by a space or the end of the line."""
    close = line.find('"', start + 1)
    if line.find("\\", start + 1, close if close >= 0 else len(line)) < 0:
        # No escape before the closing quote (nearly every comment): one slice.
        if close >= 0 and (close + 1 == len(line) or line[close + 1] == " "):
            return line[start + 1:close], close + 1
        return None
    chars: list[str] = []
    at = start + 1
    while at < len(line):
        char = line[at]
        if char == "\\" and at + 1 < len(line):
            chars.append(line[at + 1])
            at += 2
        elif char == '"':
            if at + 1 == len(line) or line[at + 1] == " ":
                return "".join(chars), at + 1
            return None
        else:
            chars.append(char)
            at += 1
    return None


def split_restore(line: str) -> list[str]:
    """The arguments iptables-restore makes of one line it reads (add_param_to_argv).

    Spaces, tabs and newlines separate; a double quote opens and closes a
    quoted part, inside which a backslash takes the next character as it is;
    a closing quote ends the argument.  Outside quotes a backslash is an
    ordinary character.  iptables-restore reads lines up to '\\n' and as C
    strings: what follows a newline or a NUL is not part of this line.
    """
    line = line.split("\n", 1)[0].split("\0", 1)[0]
    tokens: list[str] = []
    current: list[str] = []
    quote_open = escaped = False
    for char in line:
        if quote_open:
            if escaped:
                current.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quote_open = False
                tokens.append("".join(current))  # even an empty one: '""'
                current = []
            else:
                current.append(char)
        elif char == '"':
            quote_open = True
        elif char in " \t":
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


# Linux interface names are at most IFNAMSIZ - 1 bytes.
_IFNAMSIZ = 16


def bridge_name_problem(name: str) -> str | None:
    """Why iptables cannot match exactly the interface NAME, as docker-fw writes
    and reads it; None when it can.

    Allowed: 1 to 15 bytes of printable ASCII other than space, '/' and ':'
    (quotes, backslashes and '#' included), and non-ASCII characters (as
    UTF-8).  Refused: control characters, a trailing '+' (iptables' wildcard:
    'br+' matches every interface whose name starts with 'br') and a lone
    '!' (older iptables releases read '-o !' as a negation).
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text"
    if not 0 < size < _IFNAMSIZ:
        return f"an interface name has 1 to {_IFNAMSIZ - 1} bytes, this one {size}"
    bad = [c for c in name if not ("!" <= c <= "~" and c not in "/:" or c > "\x7f")]
    if bad:
        return f"it holds {ascii(bad[0])}, which no interface name docker-fw matches may hold"
    if name.endswith("+"):
        return "a trailing '+' makes iptables match every interface whose name starts with the rest"
    if name == "!":
        return "older iptables releases read a lone '!' as a negation"
    return None


_FAILED_LINE = re.compile(r"line:? (\d+) failed|Error occurred at line: (\d+)")

NOTHING_APPLIED = "nothing was applied"
_RUN_CHECK = "; run 'docker-fw check'"


@dataclass(frozen=True)
class Outcome:
    """What a failed iptables-restore left live, found by reading the table again."""

    summary: str  # e.g. NOTHING_APPLIED
    advice: str = _RUN_CHECK  # appended to the message; empty when nothing changed

    @property
    def applied_nothing(self) -> bool:
        return self.summary == NOTHING_APPLIED


# iptables-restore (1.8.9) reads a batch in 10,240-byte lines and runs the
# tail of a longer line as a line of its own; a newline ends a line and a NUL
# cuts it too.  Our longest legitimate line (a 512-character --filter, IPv6
# addresses, the comment) stays far below this.
MAX_RESTORE_LINE = 4096


def _not_for_a_line(char: str) -> bool:
    """ASCII control characters (no line of ours needs one) and surrogates (bytes
    that are not UTF-8).  Other non-ASCII characters are read as they are: a
    bridge may be named with U+2028 or U+0085 (checked on iptables 1.8.9,
    nf_tables and legacy), and its rules must be written like any other."""
    return char < " " or char == "\x7f" or "\ud800" <= char <= "\udfff"


def check_restore_lines(lines: list[str]) -> None:
    """FirewallError, before anything runs, for a line iptables-restore would not
    read as the one line it is: too long, or holding a control character."""
    for number, line in enumerate(lines, 1):
        if line.isascii() and line.isprintable() and len(line) <= MAX_RESTORE_LINE:
            continue  # nearly every line: no character to look at one by one
        bad = next((c for c in line if _not_for_a_line(c)), None)
        size = len(line.encode("utf-8")) if bad is None else 0
        if size <= MAX_RESTORE_LINE and bad is None:
            continue
        why = f"is {size} bytes long (at most {MAX_RESTORE_LINE})" if bad is None else f"holds {ascii(bad)}"
        raise FirewallError(
            f"refusing to run iptables-restore, nothing was applied: line {number} of the batch {why}: "
            f"{ascii(line[:120])}{'...' if len(line) > 120 else ''}"
        )


class Iptables:
    """Runs iptables-save/-restore (family 4) or ip6tables-save/-restore (6).

    Each run has a deadline (``timeout`` seconds; default
    DOCKER_FW_IPTABLES_TIMEOUT, else 30): past it the process and its process
    group are killed and a FirewallError names the command.
    """

    def __init__(self, family: int = 4, verbose=None, timeout: float | None = None):
        prefix = "iptables" if family == 4 else "ip6tables"
        self.family = family
        self.prefix = prefix
        self.save_bin = shutil.which(f"{prefix}-save")
        self.restore_bin = shutil.which(f"{prefix}-restore")
        self.verbose = verbose  # callable(str) or None
        self.timeout = seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT) if timeout is None else timeout
        self.saves = 0  # counters, used by tests and benchmarks
        self.restores = 0

    def _need(self, binary: str | None, name: str) -> str:
        if not binary:
            raise FirewallError(f"{name} not found on PATH: install the iptables package")
        return binary

    def _timed_out(self, command: str) -> str:
        return f"'{command}' did not finish within {self.timeout:g}s (DOCKER_FW_IPTABLES_TIMEOUT) and was killed"

    def save(self, table: str = "filter") -> Table:
        binary = self._need(self.save_bin, f"{self.prefix}-save")
        self.saves += 1
        try:
            proc = run_bounded([binary, "-t", table], None, self.timeout)
        except subprocess.TimeoutExpired:
            raise FirewallError(self._timed_out(f"{self.prefix}-save -t {table}")) from None
        if proc.returncode != 0:
            raise FirewallError(f"{self.prefix}-save failed: {_first_line(_message(proc.stderr))}")
        # Bytes as they are: an interface name or a comment may hold any byte.
        return parse_save(proc.stdout.decode("utf-8", "surrogateescape"), table)

    def restore(
        self, table: str, lines: list[str], shown: list[str] | None = None, before: Table | None = None
    ) -> None:
        """Apply lines ('-A ...', '-D ...', '-I ...', ':CHAIN - [0:0]') in one transaction.

        ``shown``: what --verbose prints for each line (defaults to the line).
        ``before``: the table the lines were planned against.  Only when the
        restore fails is the table read again and compared with it, to say
        whether nothing, all or part of the change is live.
        """
        if not lines:
            return
        check_restore_lines(lines)
        binary = self._need(self.restore_bin, f"{self.prefix}-restore")
        payload = "\n".join([f"*{table}", *lines, "COMMIT", ""])
        if self.verbose:
            for text in shown or lines:
                self.verbose(f"{self.prefix} -t {table} {text}")
        self.restores += 1
        try:
            # UTF-8: check_restore_lines refused what is not (surrogates, the
            # bytes of a foreign name read from iptables-save).
            proc = run_bounded([binary, "--wait", "--noflush"], payload.encode("utf-8"), self.timeout)
        except subprocess.TimeoutExpired:
            outcome = self._what_is_live(table, before, lines)
            raise FirewallError(
                f"{self._timed_out(f'{self.prefix}-restore --wait --noflush')}, {outcome.summary}{outcome.advice}"
            ) from None
        if proc.returncode != 0:
            outcome = self._what_is_live(table, before, lines)
            raise FirewallError(_explain_failure(_message(proc.stderr), lines, outcome, proc.returncode))
        if proc.stdout.strip():
            # iptables-restore is silent when it applies a batch; a line holding
            # -h/--help makes it print usage and exit 0 having applied nothing.
            outcome = self._what_is_live(table, before, lines)
            raise FirewallError(
                "iptables-restore printed output instead of applying the batch "
                f"({outcome.summary}): {_first_line(_message(proc.stdout))}{outcome.advice}"
            )

    def _what_is_live(self, table: str, before: Table | None, lines: list[str]) -> Outcome:
        """After a failed restore: the table read again, compared with ``before``."""
        if before is None:
            return Outcome("whether any of it is live was not checked")
        try:
            now = self.save(table)
        except FirewallError as exc:
            return Outcome(f"and the table could not be read again to see what is live ({exc})")
        return batch_outcome(before, now, lines)


def _message(data: bytes) -> str:
    """Process output meant for the user, as text that prints on any terminal."""
    return data.decode("utf-8", "backslashreplace")


def _identity(chain: str, args: tuple[str, ...] | list[str]) -> tuple:
    """A rule as the comparison after a failed restore sees it: by its comment
    when it has one (docker-fw tags each rule it writes, and iptables-save may
    print matches otherwise than written: '-p tcp --dport 80' comes back as
    '-p tcp -m tcp --dport 80'), else by chain and matches."""
    args = tuple(args)
    for i, token in enumerate(args[:-1]):
        if token == "--comment":
            return (chain, "--comment", args[i + 1])
    return (chain, args)


def _contents(table: Table) -> tuple[frozenset, Counter]:
    return frozenset(table.chains), Counter(_identity(r.chain, r.args) for r in table.rules)


def _expected_contents(before: Table, lines: list[str]) -> tuple[frozenset, Counter] | None:
    """What the table holds once the batch is applied to BEFORE; None for a
    line this does not model."""
    chains = set(before.chains)
    rules = Counter(_identity(r.chain, r.args) for r in before.rules)
    by_position = {(r.chain, r.position): r for r in before.rules}
    for line in lines:
        tokens = split_restore(line)
        if len(tokens) == 3 and tokens[0].startswith(":"):  # ':CHAIN - [0:0]'
            chains.add(tokens[0][1:])
            continue
        if len(tokens) < 2:
            return None
        op, chain, args = tokens[0], tokens[1], tokens[2:]
        if op == "-D" and len(args) == 1 and args[0].isdigit():
            rule = by_position.get((chain, int(args[0])))
            if rule is None:
                return None
            rules[_identity(chain, rule.args)] -= 1
        elif op == "-D":
            rules[_identity(chain, args)] -= 1
        elif op in ("-A", "-I"):
            if op == "-I" and args and args[0].isdigit():
                args = args[1:]
            rules[_identity(chain, args)] += 1
        else:
            return None
    return frozenset(chains), +rules  # '+': drops counts that fell to zero


def batch_outcome(before: Table, now: Table, lines: list[str]) -> Outcome:
    """Whether nothing, all or part of the batch LINES (planned against BEFORE)
    is live in NOW, the table read after iptables-restore failed.

    A batch is one transaction, so nothing or all of it is the rule; part
    means another program changed the table meanwhile, or the batch was one
    this cannot model: 'docker-fw check' says what differs from the record.
    """
    if _as_printed(now) == _as_printed(before):
        return Outcome(NOTHING_APPLIED, advice="")
    if _contents(now) == _expected_contents(before, lines):
        return Outcome("but the change is live despite the error")
    return Outcome("but the table changed: part of the change is live, or another program changed it")


def _as_printed(table: Table) -> tuple:
    return tuple(table.chains.items()), tuple((r.chain, r.line) for r in table.rules)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.split("\n")[0] if text else "(no message)"


def _explain_failure(
    stderr: str, lines: list[str], outcome: Outcome = Outcome(NOTHING_APPLIED, ""), status: int = 1
) -> str:
    """Name the line of the batch that iptables-restore refused, and what is live."""
    detail = " ".join(stderr.split())[:300] or "(no message)"
    if outcome.applied_nothing:
        what = f"iptables refused the change, {outcome.summary}"
    else:
        what = f"iptables-restore failed (exit status {status}), {outcome.summary}"
    match = _FAILED_LINE.search(stderr)
    if match:
        number = int(match.group(1) or match.group(2))
        index = number - 2  # line 1 is '*table'
        if 0 <= index < len(lines):
            return f"{what}: {lines[index]}: {detail}{outcome.advice}"
    return f"{what}: {detail}{outcome.advice}"
