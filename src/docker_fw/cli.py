"""Command line: the seed's syntax, mapped onto the service layer.

Thin on purpose: parse, look the action up in COMMANDS (its engine-free
checks, how it opens the store, its handler), call one Service method,
print, and turn errors into a one-line message and an exit code (see
errors.py).
"""

from __future__ import annotations

import argparse
import enum
import os
import stat
import sys
from collections.abc import Callable
from .values import dataclass

from . import __version__
from .errors import EXIT_OK, EXIT_PENDING_CHANGES, DockerFwError, UsageError, one_line
from .model import Kind
from .rulegrammar import (
    ADD_ACTIONS,
    AddRequest,
    Origin,
    Parser,
    ParserError,
    add_request,
    add_rule_options,
    allow_request,
    checked_lines,
    egress_request,
    given_options,
    parse_from_line,
    unprintable,
)

# The rest is imported where it is needed, once the command line is checked:
# '--help' and usage errors load no service layer, 'ls' no engine module.
TYPE_CHECKING = False  # typing is not imported at run time (see values.py)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from .backends.iptables.process import Iptables
    from .backends.nftables.process import Nft
    from .engine import Engine

MAIN_DESCRIPTION = """\
docker-fw keeps a whitelisting firewall for Docker containers. Rules name
containers, not addresses: they are recorded in docker-fw's state store and
re-resolved whenever they are applied, so 'replay' makes them follow a
container to a new address after a restart.

The firewall is the one the engine uses ('docker info': Firewall Backend):
iptables (every engine's default), or Docker 29's nftables mode
(dockerd --firewall-backend=nftables --bridge-accept-fwmark=MARK[/MASK]).
After the engine switched, 'init' removes what docker-fw left in the other
one and 'replay' writes the recorded rules again.

iptables: where the rules live (filter table), each chain reached by one jump:
  add           DOCKER-FW-FORWARD (jumped to from FORWARD): matches go to
                Docker's DOCKER chain, so only published ports can open
  add-input     DOCKER-FW-INPUT (jumped to from INPUT): matches are accepted
  add-internal  DOCKER-FW-INTERNAL (jumped to from DOCKER): matches are accepted
  egress        DOCKER-FW-EGRESS (jumped to from FORWARD, made when first
                needed): 'add NAME --source=. --dest=ADDR' rules (RETURN) above
                the locks of 'egress NAME deny' (DROP); the lock for traffic
                to the host itself ends DOCKER-FW-INPUT
  init --log-blocked  DOCKER-FW-LOG (jumped to at the end of FORWARD and just
                before Docker's icc drop): new connections there are logged
                (NFLOG group 42, rate-limited; 'docker-fw log' prints them)

nftables: tables 'ip docker-fw' and 'ip6 docker-fw' (Docker's own tables are
never touched), base chains 'forward' and 'input' at priority filter - 1,
before Docker's; an accept there is not final, a drop is:
  init          fw-init: drops new connections into each bridge from outside it
                (ip6, icc off: marks neighbour discovery within the bridge)
  add           fw-forward: matches are accepted, skipping init's drop; Docker's
                chain still accepts only published ports
  add-internal  fw-internal: matches get the engine's accept mark, which Docker's
                chain accepts before its icc drop
  add-input     fw-input: matches get the accept mark and are accepted; a host
                input chain that drops must accept the mark for them
  egress        fw-egress: outbound rules 'return' above the locks' drops;
                fw-input-lock: the locks for traffic to the host
Not on nftables: --filter words other than '[!] -i/-o IFACE' and explain
(refused), init --log-blocked (warned about, not applied); see the README.

Every rule carries the comment 'docker-fw:<container>:<hash>'.
"""

EXIT_CODES = """\
exit codes:
  0  success (replay --dry-run: nothing would change; explain: allowed)
  1  replay --dry-run: something would change; check: drift found;
     explain: blocked
  2  bad usage or invalid input (also: start's dependency cycle or missing
     dependency); nothing was changed
  3  Docker engine problem (unreachable, unknown or stopped container, or a
     container's hosts file docker-fw will not read or write)
  4  firewall problem (iptables or nft missing, change refused, unknown layout
     or bridge name, no accept mark in nftables mode, past its deadline); the
     message says whether nothing or some of the change is live
  5  state store problem (locked by another run, unreadable, damaged or
     unsafe, disk full)

environment:
  DOCKER_HOST                 the engine to talk to (as for the docker CLI)
  DOCKER_FW_STATE_DIR         state store directory (default /var/lib/docker-fw)
  DOCKER_FW_IPTABLES_TIMEOUT  seconds one iptables-save/-restore may take
                              (default 30; then it is killed: exit 4)
  DOCKER_FW_NFT_TIMEOUT       the same for one nft (nftables mode)
  DOCKER_FW_ENGINE_TIMEOUT    seconds one Docker API request may take
                              (default 60; exit 3)
"""


class _Unbuilt:
    """Stands for the sub-parser of an action this run does not name: whatever
    build_parser() defines on it is dropped (argparse's Action objects for all
    15 sub-parsers cost more than the rest of an 'ls')."""

    def __getattr__(self, name: str):
        return self._drop

    def _drop(self, *_args, **_kwargs) -> _Unbuilt:
        return self  # add_argument_group() and the like: dropped too


def _action_named(argv: list[str]) -> str | None:
    """The action ARGV names: its first word that is not an option (the main
    parser's options, -v, --version and -h, take no value); None after -h
    (the main help, which lists every action)."""
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> Parser:
    """The command line's parser.  Given ARGV, only the sub-parser of the action
    it names is built; when it names none (--help, a typo), every action is
    listed with its summary, for --help and the error, and none is built."""
    wanted = None if argv is None else _action_named(argv)
    parser = Parser(
        prog="docker-fw",
        description=MAIN_DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every firewall change (iptables or nft)")
    # -v also after the action; SUPPRESS keeps the subparser from resetting a
    # -v given before it.
    common = Parser(add_help=False)  # a parent only: Parser for its formatter's width
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="print every firewall change (iptables or nft)",
    )
    parser.add_argument("--version", action="version", version=f"docker-fw {__version__}")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)

    def action(name: str, help_text: str, description: str = "") -> Parser:
        if argv is not None and name != wanted:
            if wanted not in COMMANDS:
                sub.add_parser(name, help=help_text, add_help=False)  # listed only
            return _Unbuilt()  # type: ignore[return-value]
        return sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )

    def json_option(p: Parser) -> None:
        p.add_argument("--json", action="store_true",
                       help="print one JSON document (one line; keys in the README's 'JSON output')")

    p = action(
        "init",
        "turn Docker's FORWARD chain into a whitelist",
        "Remove Docker's catch-all rule 'FORWARD -o <bridge> -j DOCKER' (anyone may "
        "reach published ports) and send traffic between containers to the DOCKER "
        "chain ('FORWARD -i <bridge> -o <bridge> -j DOCKER', first), for every bridge "
        "network (or those named with --network); deletes those jumps of networks that "
        "are gone. IPv6, on a network with icc off: lets its neighbour discovery (ICMPv6 "
        "135, 136) within the bridge pass Docker's icc drop, as ARP does in IPv4 "
        "(ip6tables: an ACCEPT first in FORWARD; nftables: the accept mark, in fw-init). "
        "Safe to re-run: a second run changes nothing. Refuses an iptables "
        "layout it does not know. In Docker's nftables mode: a drop of new connections "
        "into each bridge from outside it, in docker-fw's table; refuses an engine with "
        "no --bridge-accept-fwmark. Also removes what docker-fw left in the other "
        "firewall after the engine switched backends.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--network", action="append", dest="networks", metavar="NAME",
        help="only this bridge network (repeatable; 'bridge' is docker0): recorded, so later "
        "runs and 'watch' keep to it; other networks keep Docker's defaults (open)",
    )
    scope.add_argument("--all-networks", action="store_true",
                       help="every bridge network again (the default), forgetting --network")
    logging = p.add_mutually_exclusive_group()
    logging.add_argument(
        "--log-blocked", dest="log_blocked", action="store_const", const=True, default=None,
        help="log new connections the whitelist drops (NFLOG group 42, rate-limited, for ulogd2; "
        "see 'docker-fw log'): recorded, so later runs and 'watch' keep it; iptables backend "
        "only (refused, exit 2, with Docker's nftables firewall backend)",
    )
    logging.add_argument("--no-log-blocked", dest="log_blocked", action="store_const", const=False,
                         help="stop logging blocked connections (recorded)")

    descriptions = {
        "add": "Allow traffic between an external address and a container, through "
        "Docker's DOCKER chain (so only published ports open). Rule in DOCKER-FW-FORWARD.",
        "add-input": "Allow traffic from a container to the host (INPUT chain). "
        "Rule in DOCKER-FW-INPUT. --dport is mandatory.",
        "add-internal": "Allow traffic between containers (or a container and the "
        "host). Rule in DOCKER-FW-INTERNAL, reached from DOCKER. --dport is mandatory.",
        "add-two-ways": "Allow a source container to reach CONTAINER by name: an "
        "add-internal rule, plus a line for CONTAINER in the source container's "
        "/etc/hosts, both restored by 'start' and 'replay'. --source must be a "
        "container; --dport is mandatory. A hosts file docker-fw will not read (over "
        "1 MiB, a symbolic link, not a regular file) makes it fail, changing nothing.",
    }
    for name in ADD_ACTIONS:
        p = action(
            name,
            descriptions[name].split(".")[0],
            descriptions[name]
            + "\n\nEither --source or --dest must be '.', not both. "
            "With --from FILE|-, every line of FILE (or standard input) is "
            "'CONTAINER [options]' and the whole file is applied as one transaction.",
        )
        p.add_argument("container", nargs="?", help="container name or id")
        add_rule_options(p)
        p.add_argument(
            "--rev-lookup",
            action="store_true",
            help="accept a container's current IPv4 or IPv6 address and record the container's name instead",
        )
        p.add_argument(
            "--from", dest="from_file", metavar="FILE|-",
            help=f"read rules from FILE (- for stdin): a regular file or a pipe, UTF-8, at most "
            f"{FROM_MAX_BYTES // (1024 * 1024)} MiB and {FROM_MAX_LINES:,} lines, no control characters",
        )

    p = action(
        "allow",
        "allow external addresses to every port a container publishes",
        "Record an 'add' rule from each address to each port the container publishes.",
    )
    p.add_argument("container")
    p.add_argument("addresses", nargs="+", metavar="address", help="IPv4 or IPv6 address or subnet")

    p = action(
        "egress",
        "set a container's outbound policy: deny (a lock) or allow (the default)",
        "deny: the container may start no connection outside its own bridge networks "
        "(external addresses, other Docker networks, the host itself), except: replies "
        "and the rest of connections already admitted (conntrack), the destinations of "
        "its 'add CONTAINER --source=. --dest=ADDR ...' rules, what its add-input rules "
        "admit, and DNS (udp and tcp port 53) to its name servers (its resolv.conf's, "
        "its --dns, and for Docker's embedded DNS the servers it forwards to). "
        "allow: Docker's default, nothing locked. Recorded by container name and "
        "applied at the container's current addresses (replay, start, watch follow it); "
        "a container that is not running has no lock, so the one that takes its old "
        "address next is not locked. 'ls' prints it back, 'drop CONTAINER' clears it "
        "with the container's rules, 'egress CONTAINER allow' alone. A line 'egress deny' "
        "in a container's docker-fw.rules label locks it the same way, the label being "
        "its record ('egress allow' there lifts no lock recorded here).",
    )
    p.add_argument("container", help="container name or id (may be stopped: applied when it starts)")
    p.add_argument("policy", choices=("deny", "allow"))

    p = action("ls", "print recorded rules and egress policies as docker-fw commands that re-create "
               "them, then the rules and egress locks of containers' docker-fw.rules labels as comments")
    p.add_argument("containers", nargs="*", metavar="container")
    json_option(p)

    p = action(
        "drop", "delete a container's rules (and its egress policy) from iptables and from the store "
        "(not those, nor the egress lock, of its docker-fw.rules label: change the label)"
    )
    p.add_argument("containers", nargs="+", metavar="container")

    p = action(
        "rename",
        "follow a 'docker rename': what is recorded for OLD becomes NEW's",
        "Rules are recorded by container name. After 'docker rename OLD NEW', move "
        "OLD's rules, the rules naming OLD, its add-two-ways hosts entries and its saved "
        "host configuration to NEW, and re-apply them ('watch' does this by itself). "
        "Refused when docker-fw already holds records for NEW, when a container is "
        "still named OLD, or when none is named NEW.",
    )
    p.add_argument("old", help="the container's former name")
    p.add_argument("new", help="its name now")

    p = action(
        "replay",
        "re-resolve addresses and make iptables match the recorded rules",
        "Re-resolve the addresses of the named containers (all recorded containers "
        "when none is named) and make iptables match the record: missing rules are "
        "added, stale ones (old addresses) removed. Rules of other containers that "
        "name these are replayed too. Rules naming a container that is not running "
        "are withdrawn (its old address may be given to another container) and come "
        "back with the next replay after it starts. A container's hosts file that "
        "cannot be read or written is warned about, everything else is done, and the "
        "exit code is 3.",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change; exit 1 if anything would")
    p.add_argument("containers", nargs="*", metavar="container")
    json_option(p)

    p = action(
        "save-hostconfig",
        "record running containers' host configuration and assigned host ports",
        "Record each running container's wiring (links, volumes-from, network mode, "
        "published ports) and the host ports the engine assigned to dynamically "
        "published ports. 'start' uses it to ask for the same host ports again, and "
        "refuses to start a container whose wiring changed since. 'start' saves it "
        "again after every successful start.",
    )
    p.add_argument("containers", nargs="+", metavar="container")

    p = action(
        "start",
        "start containers in dependency order and restore their rules",
        "Order the containers by their dependencies (legacy links, --volumes-from, "
        "--network container:X), start each stopped one (running or paused ones keep "
        "their state), pause it with --paused, then at once restore its /etc/hosts "
        "entries and replay its rules. Dynamically published ports get the host ports "
        "saved by save-hostconfig again where the engine allows it (API 1.23); "
        "otherwise changed host ports are reported. A dependency outside the "
        "selection is an error unless --pull-deps; a cycle is an error naming it.",
    )
    p.add_argument("--dry-run", action="store_true", help="print the start order, change nothing")
    p.add_argument("--paused", action="store_true", help="pause each container right after it starts")
    p.add_argument("--pull-deps", action="store_true", help="start the containers' dependencies too")
    p.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="N",
        help="start up to N independent containers at once (default 1: one at a time)",
    )
    p.add_argument("containers", nargs="+", metavar="container")

    p = action(
        "watch",
        "keep iptables and hosts entries in line with the engine, following its events",
        "Run in the foreground (logging one line per change to stderr) and follow the "
        "engine's events: when a container starts, restarts or is unpaused, replay its "
        "rules, the rules naming it and its hosts entries; when it dies or stops, "
        "withdraw the rules pointing at the address it had (pause keeps them). At "
        "startup, after the engine comes back, on SIGHUP and every --interval seconds, "
        "reconcile everything, including 'init' unless --no-init (an engine restart puts Docker's "
        "catch-all back). Bursts of events (and of SIGHUPs) are applied as one batch; a "
        "failed batch is retried with backoff, as is the engine when it is away (a few "
        "log lines per outage). SIGTERM stops it. A systemd unit is in "
        "contrib/docker-fw-watch.service.",
    )
    p.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                   help="full reconcile every SECONDS, 0.1 to 86400 (default 10)")
    p.add_argument("--json", action="store_true", help="log JSON lines instead of text")
    p.add_argument("--metrics", metavar="ADDR:PORT",
                   help="serve Prometheus metrics on http://ADDR:PORT/metrics (off by default): an IPv4 "
                   "address or [IPv6] one, e.g. 127.0.0.1:9101; see the README for what is measured")
    p.add_argument("--no-init", dest="init", action="store_false",
                   help="never run 'init': leave Docker's FORWARD chain as it is (for hosts "
                   "where something else reshapes it); docker-fw's own chains are still kept")

    p = action(
        "check",
        "report drift between the record and the live ruleset; exit 1 if there is any",
        "Print every difference between what docker-fw has recorded and what is live: "
        "'init' not in effect (Docker's catch-all is back), missing rules, stale rules "
        "(old addresses, rules of dropped containers), foreign rules in docker-fw's "
        "chains, out-of-date hosts entries, hosts files it cannot read, recorded rules "
        "that cannot be applied as they are (a filter this version refuses). Exit 0 when "
        "there is none, 1 when there is "
        "(for monitoring). Changes nothing: 'docker-fw replay' (and 'init') repair. "
        "Warns (stderr; --json: 'warnings'), without counting it as drift, about each "
        "published port that IPv6 clients reach through docker-proxy (a container with "
        "no IPv6 address; 'init' warns too).",
    )
    json_option(p)

    p = action(
        "explain",
        "say whether the live firewall lets a new connection through, and which rule decides",
        "Walk the live ruleset (raw, nat and filter tables: Docker's chains and docker-fw's) the "
        "way the kernel would for a new connection from --source to --dest, on each network the "
        "two share, and print the verdict, the rule that decided it (for a docker-fw rule, the "
        "command that recorded it; for Docker's, which one and why) and, for a blocked flow, the "
        "docker-fw command that would allow it (checked by walking again with it). An external "
        "client reaches a published port through its DNAT: --dport is the container's port. "
        "Changes nothing. Exit 0: allowed, 1: blocked, 2: bad input, or an engine on Docker's "
        "nftables backend (explain walks iptables rulesets only).",
    )
    p.add_argument("-s", "--source", metavar="SPEC", help="a container, '/' (the host) or an address")
    p.add_argument("-d", "--dest", metavar="SPEC", help="a container, '/' (the host) or an address")
    p.add_argument("--dport", metavar="PORT", help="the destination port (a container's own port, not the host port it is published on)")
    p.add_argument("-p", "--protocol", default="tcp", metavar="tcp|udp", help="default tcp")
    p.add_argument("--trace", action="store_true", help="also print every rule the packet matched")
    json_option(p)

    p = action(
        "graph",
        "draw every flow the recorded rules allow, at today's addresses",
        "Print every allowed flow: external address or subnet -> container:port, "
        "container -> container:port, container -> host:port, from the record, the "
        "containers' docker-fw.rules labels (marked with their line) and the engine's live "
        "addresses; a container whose egress is locked with what it may still reach (its "
        "networks, its outbound and add-input rules, DNS). A rule that cannot be applied "
        "now (a stopped container) is shown as withdrawn. Formats: text (default, for a terminal), json (stable keys, "
        "see the README), dot (Graphviz: 'docker-fw graph --format dot | dot -Tsvg'), "
        "mermaid, html (one self-contained page). Changes nothing.",
    )
    p.add_argument("--format", default="text", choices=GRAPH_FORMATS, help="output format (default text)")

    p = action(
        "log",
        "print the connections the whitelist blocked (after 'init --log-blocked')",
        "Print the new connections the whitelist dropped, as ulogd2 wrote them down "
        "(the file DOCKER_FW_BLOCKED_LOG, default /var/log/ulog/docker-fw-blocked.json; "
        "its last 4 MiB), one per line: 'TIME blocked SRC -> CONTAINER:PORT/PROTO', with "
        "the names of the containers holding those addresses now. Needs 'docker-fw init "
        "--log-blocked' and ulogd2 running with contrib/docker-fw-ulogd.conf in the "
        "engine's network namespace. Logging is rate-limited per source address and in "
        "all, so a flood shows as a few lines.",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new ones until SIGINT or SIGTERM")
    p.add_argument("--json", action="store_true", help="one JSON object per line (keys: see the README)")

    p = action(
        "gc",
        "forget the records of containers that no longer exist",
        "Forget the rules, hosts entries and saved host configuration of containers "
        "that have been gone (destroyed) for at least --days days. A container is gone "
        "from when 'watch' saw it destroyed, or when 'gc' first found it missing; one "
        "re-created under the same name before that gets its rules back.",
    )
    p.add_argument("--days", type=float, default=7.0, help="grace period in days, 0 to 36500 (default 7; 0: now)")
    p.add_argument("--dry-run", action="store_true", help="print what would be forgotten")

    p = action(
        "import-legacy",
        "record the original docker-fw's rules, hosts entries and saved host configurations",
        "Read what the original docker-fw (Go) kept in Docker's container directories "
        "(DIR/containers/<id>/extraRules.json, customHosts.json, backupHostConfig.json) for "
        "every container the engine knows, and record it in docker-fw's store: each rule as "
        "the action that means the same (FORWARD -> DOCKER: add, with the bridge docker0 "
        "written @bridge, as allow does; INPUT -> ACCEPT: add-input; DOCKER -> ACCEPT: "
        "add-internal, or add-two-ways with its customHosts.json entry), container ids and "
        "names as the containers' current names; a backupHostConfig.json as save-hostconfig's "
        "record. Nothing is applied: 'docker-fw replay' does that. Anything that cannot be "
        "mapped (an unknown chain, a container the engine does not know, a filter or address "
        "docker-fw refuses, a hosts entry without its rule, a file that is not the old tool's "
        "JSON, larger than 1 MiB or a symbolic link) is one warning line naming the file and "
        "the rule, and then nothing is recorded (exit 2). Running it again records nothing "
        "new; a saved host configuration already recorded is kept.",
    )
    p.add_argument(
        "--docker-root", default="/var/lib/docker", metavar="DIR",
        help="the engine's data root, 'Docker Root Dir' of 'docker info' (default /var/lib/docker)",
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help="print the docker-fw commands it would record (as 'ls' prints them; the rest as "
        "'#' comments) and change nothing",
    )
    return parser


def _request(args: argparse.Namespace, action: str | None = None) -> AddRequest:
    """The validated request the command line's container and rule options make."""
    return add_request(action or getattr(args, "action", None) or "add", args.container, vars(args))


GRAPH_FORMATS = ("text", "json", "dot", "mermaid", "html")  # graph.FORMATS, without importing it for --help

# --from input is read bounded: a typo such as '--from /dev/zero' (or an endless
# pipe) is refused, not read until memory runs out.  The bounds leave room for
# 'ls' output of the line limit with long filters (100,000 lines of ~160 bytes).
FROM_MAX_BYTES = 16 * 1024 * 1024
FROM_MAX_LINES = 100_000


def _read_input(path: str, stdin=None) -> bytes:
    """At most FROM_MAX_BYTES + 1 bytes of a --from FILE (or of standard input
    for '-'): one byte more than allowed tells 'too large' without reading on.

    FILE must be a regular file or a pipe (FIFO, process substitution): a
    device or a directory is refused before anything is read from it.
    """
    if path == "-":
        stream = stdin or sys.stdin
        # A buffered binary read returns once it has that many bytes or at EOF.
        data = getattr(stream, "buffer", stream).read(FROM_MAX_BYTES + 1)
        # A text stream (tests) decoded already: an undecodable stand-in is
        # encoded so that the strict decoding below refuses it.
        return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                raise UsageError(f"--from {path}: not a regular file or a pipe")
            return handle.read(FROM_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--from {path}: {exc.strerror}") from None


def input_lines(path: str, stdin=None) -> list[str]:
    """The lines of a --from input: bounded, strict UTF-8, split on '\\n' only
    (rulegrammar.checked_lines)."""
    data = _read_input(path, stdin)
    if len(data) > FROM_MAX_BYTES:
        raise UsageError(f"--from {path}: larger than {FROM_MAX_BYTES // (1024 * 1024)} MiB (the limit)")
    return checked_lines(data, FROM_MAX_LINES, f"--from {path}", lambda number: Origin.of_input(path, number))


def read_from(path: str, action: str, stdin=None) -> list[AddRequest]:
    """Requests from a --from file: one 'CONTAINER [options]' per line.

    Blank lines and '#' comments are skipped; a line may also be a whole
    command as 'docker-fw ls' prints it (rulegrammar.parse_from_line).  The
    input is bounded (FROM_MAX_BYTES, FROM_MAX_LINES) and checked by input_lines().
    """
    lines = input_lines(path, stdin)
    requests = [
        request
        for number, line in enumerate(lines, 1)
        if (request := parse_from_line(line, action, Origin.of_input(path, number))) is not None
    ]
    if not requests:
        raise UsageError(f"--from {path}: no rules in input")
    return requests


def _add_requests(args: argparse.Namespace) -> list[AddRequest]:
    if args.from_file is None:
        return [_request(args, args.action)]
    given = given_options(vars(args))
    if args.container or given:
        raise UsageError(
            "with --from, no container or rule option may be given (only --rev-lookup): "
            + ", ".join(([args.container] if args.container else []) + given)
        )
    return read_from(args.from_file, args.action)


class _OnFirstUse:
    """An object made (and its module imported) when first used: 'ls' of
    recorded containers never asks the engine, so it does not load it."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None

    def __getattr__(self, name: str):
        if self._made is None:
            self._made = self._make()
        return getattr(self._made, name)


def _engine() -> Engine:
    from .engine import Engine

    return Engine()


def _iptables(family: int, verbose) -> Iptables:
    from .backends.iptables.process import Iptables

    return Iptables(family=family, verbose=verbose)


def _nft(verbose) -> Nft:
    from .backends.nftables.process import Nft

    return Nft(verbose=verbose)


def real_backends(verbose) -> tuple[Engine, Iptables, Iptables, Nft]:
    """The engine and the firewalls (iptables, ip6tables, nft) a run talks to, each made on its first use."""
    return (_OnFirstUse(_engine), _OnFirstUse(lambda: _iptables(4, verbose)), _OnFirstUse(lambda: _iptables(6, verbose)),
            _OnFirstUse(lambda: _nft(verbose)))


def _printing(write):
    """WRITE, for messages: each is printed as one line (errors.one_line)."""
    return lambda text: write(one_line(text))


def _check_argv(argv: list[str]) -> None:
    """Refuse arguments no name, address, port, filter or path of ours holds.

    Non-UTF-8 bytes reach Python as lone surrogates (surrogateescape), which
    neither the store nor the engine's client could even encode; a newline or
    another control character could only serve to forge output.  A tab is
    whitespace, as in --from lines.
    """
    for number, arg in enumerate(argv, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"argument {number} is not UTF-8 text: '{arg}'") from None
        bad = unprintable(arg)
        if bad is not None:
            raise UsageError(f"argument {number} holds a control or unprintable character (U+{ord(bad):04X}): '{arg}'")


@dataclass(frozen=True)
class Output:
    """What a command that opens no store itself (StoreUse.NONE) prints with."""

    out: Callable[[str], None]
    warn: Callable[[str], None]


class StoreUse(enum.Enum):
    """How a command opens the state store."""

    WRITE = "write"
    # Changes neither the store nor the firewall: opened read-only (a shared
    # lock, nothing created), so it works on a read-only state directory.
    READ = "read"
    READ_ON_DRY_RUN = "read with --dry-run"  # not 'gc --dry-run': it marks containers gone, then rolls back
    NONE = "none"  # run() opens none: the command runs on its own (watch, log), given an Output


@dataclass(frozen=True)
class Command:
    """What run() does for one action.

    CHECK takes the parsed arguments and checks everything that needs neither
    the engine, nor iptables, nor the store (what it returns is given to
    HANDLER as PREPARED); HANDLER(service, args, prepared) runs the action and
    gives the exit code (None: 0).  NEEDS_ENGINE is False for a command that
    runs without the engine ('ls': the rules of containers' labels are left
    out, with a warning).
    """

    handler: Callable[[Any, argparse.Namespace, Any], int | None]
    check: Callable[[argparse.Namespace], Any] = lambda _args: None
    store: StoreUse = StoreUse.WRITE
    needs_engine: bool = True

    def reads_only(self, args: argparse.Namespace) -> bool:
        return self.store is StoreUse.READ or (self.store is StoreUse.READ_ON_DRY_RUN and args.dry_run)


def _pending(changes) -> int:
    """1 (replay --dry-run, check) when there is anything to change, else 0."""
    return EXIT_PENDING_CHANGES if changes else EXIT_OK


# The handlers: HANDLER(service, args, prepared) -> exit code (None: 0).


def _init(service, args, _) -> None:
    service.init(args.networks, all_networks=args.all_networks, log_blocked=args.log_blocked)


def _add(service, args, requests) -> None:
    if args.action == "add-two-ways":
        service.add_two_ways(requests, rev_lookup=args.rev_lookup)
    else:
        service.add(Kind.from_action(args.action), requests, rev_lookup=args.rev_lookup)


def _allow(service, args, _) -> None:
    service.allow(args.container, args.addresses)


def _wants_json(args) -> bool:
    """--json given (a handler called without parsed arguments, as tests do: text)."""
    return bool(getattr(args, "json", False))


def _quiet(service) -> Callable[[str], None]:
    """The service's printer, which --json output goes to; the service's own
    text lines are kept from it meanwhile."""
    printer = service.out
    service.out = lambda _line: None
    return printer

def _egress(service, _args, request) -> None:
    service.egress(request)


def _checked_egress(args):
    return egress_request(args.container, args.policy)


def _ls(service, args, _) -> None:
    if not _wants_json(args):
        service.ls(args.containers)
        return
    from .jsonout import dumps, ls_document

    printer = _quiet(service)
    rules, egress = service.ls_rules(args.containers), service.ls_egress(args.containers)
    printer(dumps(ls_document(rules, egress, *service.ls_labels(args.containers))))


def _drop(service, args, _) -> None:
    service.drop(args.containers)


def _rename(service, args, _) -> None:
    service.rename(args.old, args.new)


def _save_hostconfig(service, args, _) -> None:
    service.save_hostconfig(args.containers)


def _start(service, args, _) -> None:
    service.start(args.containers, dry_run=args.dry_run, paused=args.paused, pull_deps=args.pull_deps, jobs=args.jobs)


def _check(service, args, _) -> int:
    if not _wants_json(args):
        return _pending(service.check())
    from .jsonout import check_document, dumps

    printer, said = service.out, []
    service.out = said.append
    problems, warnings = service.check_report()
    notes = [line for line in said if line not in problems and line != "check: no drift"]
    printer(dumps(check_document(problems, notes, warnings)))
    return _pending(problems)


def _explain(service, args, question) -> int:
    from .explain import explain, text_lines

    found = explain(service, question)
    if args.json:
        from .jsonout import dumps, explain_document

        service.out(dumps(explain_document(found)))
    else:
        for line in text_lines(found, trace=args.trace):
            service.out(line)
    return found.exit_code


def _graph(service, args, _) -> None:
    from .graph import show

    show(service, args.format)


def _log(output, args, _) -> int:
    from .blocklog import run_log

    return run_log(args.follow, args.json, output.out, output.warn)


def _gc(service, args, _) -> None:
    service.gc(args.days, dry_run=args.dry_run)


def _import_legacy(service, args, _) -> None:
    from .legacy_import import import_legacy

    import_legacy(service, args.docker_root, dry_run=args.dry_run)


def _replay(service, args, _) -> int | None:
    if _wants_json(args):
        from .jsonout import dumps, replay_document

        printer = _quiet(service)
        plan = service.replay(args.containers, dry_run=True)
        printer(dumps(replay_document(plan)))
        return _pending(plan)
    plan = service.replay(args.containers, dry_run=args.dry_run)
    return _pending(plan) if args.dry_run else None


def _watch(_output, args, metrics) -> int:
    from .watch import run_watch

    return run_watch(interval=args.interval, as_json=args.json, init=args.init, metrics=metrics)


# The checks: CHECK(args) -> what the handler is given as PREPARED.


def _checked_allow(args) -> None:
    allow_request(args.container, args.addresses)


def _checked_replay(args) -> None:
    if args.json and not args.dry_run:
        raise UsageError("--json needs --dry-run: replay prints JSON only for what it would change")


def _checked_explain(args):
    from .explain import checked_question

    if args.trace and args.json:
        raise UsageError("--trace is for text output: --json always holds the trace")
    return checked_question(args.source, args.dest, args.dport, args.protocol)


def _checked_jobs(args) -> None:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")


# float() takes 'nan', 'inf' and '1e308': as --interval they made a busy loop
# (a NaN deadline) or an OverflowError of a wait.
INTERVAL_RANGE = (0.1, 86400.0)  # seconds
DAYS_RANGE = (0.0, 36500.0)


def _checked_number(option: str, value: float, bounds: tuple[float, float], unit: str) -> None:
    low, high = bounds
    if not low <= value <= high:  # false for nan too
        raise UsageError(f"{option} must be {low:g} to {high:g} {unit}, not {value!r}")


def _checked_docker_root(args) -> None:
    from .legacy_import import check_docker_root

    check_docker_root(args.docker_root)


def _checked_days(args) -> None:
    _checked_number("--days", args.days, DAYS_RANGE, "days")


def _checked_interval(args) -> None:
    _checked_number("--interval", args.interval, INTERVAL_RANGE, "seconds")


def _checked_watch(args) -> tuple[str, int] | None:
    """--interval in range; --metrics ADDR:PORT as (address, port), None without it."""
    _checked_interval(args)
    if args.metrics is None:
        return None
    from .metrics import parse_listen  # no prometheus_client import: that waits for the server

    return parse_listen(args.metrics)


COMMANDS: dict[str, Command] = {
    "init": Command(_init),
    **{name: Command(_add, check=_add_requests) for name in ADD_ACTIONS},
    "allow": Command(_allow, check=_checked_allow),
    "egress": Command(_egress, check=_checked_egress),
    "ls": Command(_ls, store=StoreUse.READ, needs_engine=False),
    "drop": Command(_drop),
    "rename": Command(_rename),
    "save-hostconfig": Command(_save_hostconfig),
    "start": Command(_start, check=_checked_jobs, store=StoreUse.READ_ON_DRY_RUN),
    "check": Command(_check, store=StoreUse.READ),
    "explain": Command(_explain, check=_checked_explain, store=StoreUse.READ),
    "gc": Command(_gc, check=_checked_days),
    "graph": Command(_graph, store=StoreUse.READ),
    "log": Command(_log, store=StoreUse.NONE),
    "replay": Command(_replay, check=_checked_replay, store=StoreUse.READ_ON_DRY_RUN),
    "import-legacy": Command(_import_legacy, check=_checked_docker_root, store=StoreUse.READ_ON_DRY_RUN),
    "watch": Command(_watch, check=_checked_watch, store=StoreUse.NONE),
}


def run(argv: list[str], out=None, err=None, backends=real_backends) -> int:
    """Run one docker-fw command; the exit code.  OUT and ERR print one line
    each (default: stdout, stderr); BACKENDS(verbose) gives the engine and the
    firewalls: iptables, ip6tables and, optionally, nft (tests give fakes; with
    no nft, nft is found on PATH in nftables mode, and not looked at otherwise)."""
    out = _printing(out or (lambda s: print(s, flush=True)))
    err = _printing(err or (lambda s: print(s, file=sys.stderr, flush=True)))
    parser = build_parser(argv)
    args = None
    try:
        _check_argv(argv)
        args = parser.parse_args(argv)
        if not args.action:
            parser.print_help()
            return 2
        command = COMMANDS[args.action]
        # Everything the command line says is checked before the engine,
        # iptables or the store is touched.
        prepared = command.check(args)
        if command.store is StoreUse.NONE:
            return command.handler(Output(out, lambda s: err(f"docker-fw: warning: {s}")), args, prepared) or EXIT_OK
        from .store import Store

        verbose = (lambda line: out(f"docker-fw: {line}")) if args.verbose else None
        engine, firewall, firewall6, *nft = backends(verbose)
        with Store.open(read_only=command.reads_only(args)) as store:
            if not command.needs_engine:
                from .listing import Records

                return command.handler(Records(engine, store, out=out, warn=lambda s: err(f"docker-fw: warning: {s}")),
                                       args, prepared) or EXIT_OK
            from .actions import Service

            service = Service(
                engine, firewall, store, out=out, warn=lambda s: err(f"docker-fw: warning: {s}"),
                firewall6=firewall6, nft=nft[0] if nft else None,
            )
            return command.handler(service, args, prepared) or EXIT_OK
    except DockerFwError as exc:
        message = str(exc)
        # Named by argparse's own messages only: a message may well start with
        # a file's or a container's name 'docker-fw...'.
        if not isinstance(exc, ParserError):
            action = getattr(args, "action", None)
            message = f"docker-fw {action}: {message}" if action else f"docker-fw: {message}"
        err(message)  # one line: _printing escapes what the message quotes
        return exc.exit_code
    except KeyboardInterrupt:
        err("docker-fw: interrupted")
        return 130


def main() -> NoReturn:
    # What iptables-save prints may hold any byte (kept with surrogateescape:
    # interface names, comments); print such bytes escaped rather than fail.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # not when replaced, or None
            stream.reconfigure(errors="backslashreplace")
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
