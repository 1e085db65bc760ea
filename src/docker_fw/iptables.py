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
from dataclasses import dataclass, field

from .errors import FirewallError


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
    """Parse one table out of iptables-save output (other tables are skipped)."""
    result = Table(table)
    positions: dict[str, int] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
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


def split_saved(line: str) -> list[str]:
    """Split a rule as iptables-save prints it (not shell syntax).

    Only double quotes group, and inside them a backslash escapes the next
    character: single quotes are ordinary characters (``-i a'b``).
    """
    if '"' not in line:
        return line.split()
    tokens: list[str] = []
    current: list[str] = []
    in_token = quoted = escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            in_token = True
        elif char.isspace() and not quoted:
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
        else:
            current.append(char)
            in_token = True
    if in_token:
        tokens.append("".join(current))
    return tokens


_FAILED_LINE = re.compile(r"line:? (\d+) failed|Error occurred at line: (\d+)")


# iptables-restore (1.8.9) reads a batch in 10,240-byte lines and runs the
# tail of a longer line as a line of its own; a newline, NUL or other control
# character would end or cut a line too.  Our longest legitimate line (a
# 512-character --filter, IPv6 addresses, the comment) stays far below this.
MAX_RESTORE_LINE = 4096


def check_restore_lines(lines: list[str]) -> None:
    """FirewallError, before anything runs, for a line iptables-restore would not
    read as the one line it is: too long, or holding a control character."""
    for number, line in enumerate(lines, 1):
        size = len(line.encode("utf-8", "surrogateescape"))
        bad = next((c for c in line if not c.isprintable()), None)
        if size <= MAX_RESTORE_LINE and bad is None:
            continue
        why = f"is {size} bytes long (at most {MAX_RESTORE_LINE})" if bad is None else f"holds {ascii(bad)}"
        raise FirewallError(
            f"refusing to run iptables-restore, nothing was applied: line {number} of the batch {why}: "
            f"{ascii(line[:120])}{'...' if len(line) > 120 else ''}"
        )


class Iptables:
    """Runs iptables-save/-restore (family 4) or ip6tables-save/-restore (6)."""

    def __init__(self, family: int = 4, verbose=None):
        prefix = "iptables" if family == 4 else "ip6tables"
        self.family = family
        self.prefix = prefix
        self.save_bin = shutil.which(f"{prefix}-save")
        self.restore_bin = shutil.which(f"{prefix}-restore")
        self.verbose = verbose  # callable(str) or None
        self.saves = 0  # counters, used by tests and benchmarks
        self.restores = 0

    def _need(self, binary: str | None, name: str) -> str:
        if not binary:
            raise FirewallError(f"{name} not found on PATH: install the iptables package")
        return binary

    def save(self, table: str = "filter") -> Table:
        binary = self._need(self.save_bin, f"{self.prefix}-save")
        self.saves += 1
        try:
            proc = subprocess.run(
                [binary, "-t", table], capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise FirewallError(f"cannot run {binary}: {exc}") from None
        if proc.returncode != 0:
            raise FirewallError(f"{self.prefix}-save failed: {_first_line(proc.stderr)}")
        return parse_save(proc.stdout, table)

    def restore(self, table: str, lines: list[str], shown: list[str] | None = None) -> None:
        """Apply lines ('-A ...', '-D ...', '-I ...', ':CHAIN - [0:0]') in one transaction.

        ``shown``: what --verbose prints for each line (defaults to the line).
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
            proc = subprocess.run(
                [binary, "--wait", "--noflush"],
                input=payload,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise FirewallError(f"cannot run {binary}: {exc}") from None
        if proc.returncode != 0:
            raise FirewallError(_explain_failure(proc.stderr, lines))
        if proc.stdout.strip():
            # iptables-restore is silent when it applies a batch; a line holding
            # -h/--help makes it print usage and exit 0 having applied nothing.
            raise FirewallError(
                "iptables-restore printed output instead of applying the batch "
                f"(nothing was applied): {_first_line(proc.stdout)}"
            )


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "(no message)"


def _explain_failure(stderr: str, lines: list[str]) -> str:
    """Name the line of the batch that iptables-restore refused."""
    detail = " ".join(stderr.split())[:300] or "(no message)"
    match = _FAILED_LINE.search(stderr)
    if match:
        number = int(match.group(1) or match.group(2))
        index = number - 2  # line 1 is '*table'
        if 0 <= index < len(lines):
            return f"iptables refused the change, nothing was applied: {lines[index]}: {detail}"
    return f"iptables refused the change, nothing was applied: {detail}"
