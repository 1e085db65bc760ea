"""rulegrammar: command-line options and rule lines -> validated requests, errors with their origin."""

from __future__ import annotations

import dataclasses

import pytest

from docker_fw.errors import UsageError
from docker_fw.model import AddressKind, Kind
from docker_fw.rulegrammar import (
    ARGV,
    AddRequest,
    AllowRequest,
    LabelRule,
    Origin,
    OriginKind,
    RuleError,
    add_request,
    allow_request,
    checked_spec,
    parse_from_line,
    parse_label_line,
)

FILE = Origin.file("rules.txt", 7)
LABEL = Origin.label("docker-fw.rules", 3)


# --- origins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin, kind, name, line, shown",
    [
        (Origin.argv(), OriginKind.ARGV, "", 0, ""),
        (Origin.file("/etc/fw/web.rules", 4), OriginKind.FILE, "/etc/fw/web.rules", 4, "/etc/fw/web.rules line 4"),
        (Origin.stdin(2), OriginKind.STDIN, "stdin", 2, "stdin line 2"),
        (Origin.of_input("-", 9), OriginKind.STDIN, "stdin", 9, "stdin line 9"),
        (Origin.of_input("a.txt", 9), OriginKind.FILE, "a.txt", 9, "a.txt line 9"),
        (Origin.label("docker-fw.rules", 1), OriginKind.LABEL, "docker-fw.rules", 1, "label docker-fw.rules line 1"),
    ],
)
def test_origins_of_each_kind(origin, kind, name, line, shown):
    assert (origin.kind, origin.name, origin.line, str(origin)) == (kind, name, line, shown)


def test_origin_and_request_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FILE.line = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        AddRequest("web", "1.2.3.4").source = "5.6.7.8"  # type: ignore[misc]


def test_rule_error_carries_origin_and_message_as_fields():
    exc = RuleError("--source is mandatory", FILE)
    assert isinstance(exc, UsageError) and exc.exit_code == 2
    assert (exc.origin, exc.message) == (FILE, "--source is mandatory")
    assert str(exc) == "rules.txt line 7: --source is mandatory"
    assert str(RuleError("--source is mandatory")) == "--source is mandatory"  # the command line's


# --- from command-line options ------------------------------------------------------------------


def test_options_become_one_validated_request():
    request = add_request(
        "add", "web", {"source": "203.0.113.0/24", "sport": "1024", "dest": None, "dport": "80",
                       "protocol": "udp", "filter": "! -i @bridge"},
    )
    assert request == AddRequest("web", "203.0.113.0/24", ".", 1024, 80, "udp", ("!", "-i", "@bridge"), ARGV)
    assert request.where == ""


@pytest.mark.parametrize(
    "action, container, options, message",
    [
        ("add", None, {"source": "1.2.3.4"}, "name a container, or use --from FILE"),
        ("add", "web", {"dport": "80"}, "--source is mandatory"),
        ("add", "web", {"source": ""}, "empty address specification"),
        ("add", "web", {"source": "1.2.3.4", "dest": ""}, "empty address specification"),
        ("add", "web", {"source": "1.2.3.4", "dport": "http"}, "--dport: not a port number: 'http'"),
        ("add", "web", {"source": "1.2.3.4", "sport": "0"}, "--sport: port out of range 1-65535: 0"),
        ("add", "web", {"source": "1.2.3.4.5"}, "invalid IPv4 address or subnet: '1.2.3.4.5'"),
        ("add", "web", {"source": "db"}, "'add' is for traffic from or to external addresses"),
        ("add", "web", {"source": "web"}, "source and destination are the same"),  # its own name is '.'
        ("add-internal", "web", {"source": "db"}, "--dport is mandatory for add-internal"),
        ("add-input", "web", {"source": ".", "dest": "/"}, "--dport is mandatory for add-input"),
        ("add-two-ways", "web", {"source": "203.0.113.1", "dport": "80"}, "add-two-ways needs --source to be another container"),
        ("add-two-ways", "web", {"source": "db"}, "--dport is mandatory for add-internal"),
        ("add", "web", {"source": "1.2.3.4", "filter": "-j ACCEPT"}, "may only hold match conditions"),
    ],
)
def test_bad_options_are_rule_errors_with_their_origin(action, container, options, message):
    with pytest.raises(RuleError) as info:
        add_request(action, container, options, FILE)
    assert info.value.origin == FILE
    assert message in info.value.message
    assert str(info.value) == f"rules.txt line 7: {info.value.message}"


def test_checked_spec_is_the_rule_as_recorded_before_the_engine_is_asked():
    spec = checked_spec("add-two-ways", AddRequest("/db", "web", dport=5432))
    assert (spec.owner, spec.kind, spec.source.kind, spec.source.value, spec.dest.kind) == (
        "db", Kind.INTERNAL, AddressKind.CONTAINER, "web", AddressKind.SELF,
    )


def test_allow_takes_external_addresses_only():
    assert allow_request("web", ["198.51.100.0/24", "2001:db8::1"]) == AllowRequest(
        "web", ("198.51.100.0/24", "2001:db8::1"), ARGV,
    )
    with pytest.raises(RuleError, match=r"^label docker-fw.rules line 3: allow takes IPv4 addresses .* not 'db'$"):
        allow_request("web", ["198.51.100.0/24", "db"], LABEL)


# --- --from lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["", "   ", "\t", "# a comment", "   # indented", "#"])
def test_blank_lines_and_comments_are_no_rule(line):
    assert parse_from_line(line, "add", FILE) is None
    assert parse_label_line(line, "web", LABEL) is None


@pytest.mark.parametrize(
    "action, line, expected",
    [
        ("add", "web --source 203.0.113.0/24 --dport 80", AddRequest("web", "203.0.113.0/24", dport=80, origin=FILE)),
        ("add", "docker-fw add web --source=198.51.100.7 --dest=. --dport=443 --protocol=tcp",
         AddRequest("web", "198.51.100.7", dport=443, origin=FILE)),
        ("add-input", "add-input app -s . -d / --dport 53 -p udp",
         AddRequest("app", ".", "/", dport=53, proto="udp", origin=FILE)),
        ("add-internal", "db --source app --dport 5432", AddRequest("db", "app", dport=5432, origin=FILE)),
        ("add-two-ways", "docker-fw add-two-ways db --source=web --dport=5432",
         AddRequest("db", "web", dport=5432, origin=FILE)),
        ("add", "web --source 1.2.3.4 --filter '-m string --string \"a b\" --algo bm'",
         AddRequest("web", "1.2.3.4", filter=("-m", "string", "--string", "a b", "--algo", "bm"), origin=FILE)),
    ],
)
def test_a_from_line_of_every_action(action, line, expected):
    assert parse_from_line(line, action, FILE) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("web --source '1.2.3.4", "No closing quotation"),
        ("web --dport 80", "--source is mandatory"),
        ("web --source 1.2.3.4 --protocol gre", "argument -p/--protocol: invalid choice: 'gre'"),
        ("add-internal web --source db --dport 80", "this line is for add-internal, not add"),
        ("web --source 1.2.3.4 --rev-lookup", "unrecognized arguments: --rev-lookup"),
        ("docker-fw", "the following arguments are required: container"),
        ("web --source 1.2.3.4 --dport 0", "--dport: port out of range 1-65535: 0"),
    ],
)
def test_a_bad_from_line_is_a_rule_error_with_its_line(line, message):
    origin = Origin.of_input("-", 12)
    with pytest.raises(RuleError) as info:
        parse_from_line(line, "add", origin)
    assert info.value.origin == origin
    assert info.value.message.startswith(message) or message in info.value.message
    assert str(info.value) == f"stdin line 12: {info.value.message}"
    assert not info.value.message.startswith("--from line")


# --- a container's label: action first, no container ----------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("allow 198.51.100.0/24 203.0.113.7",
         LabelRule("allow", AllowRequest("web", ("198.51.100.0/24", "203.0.113.7"), LABEL))),
        ("add --source=198.51.100.2 --dport=80", LabelRule("add", AddRequest("web", "198.51.100.2", dport=80, origin=LABEL))),
        ("add-internal --source=app --dport=5432",
         LabelRule("add-internal", AddRequest("web", "app", dport=5432, origin=LABEL))),
        ("add-input --source=. --dest=/ --dport=9100",
         LabelRule("add-input", AddRequest("web", ".", "/", dport=9100, origin=LABEL))),
        ("add-two-ways --source=worker --dport=9000",
         LabelRule("add-two-ways", AddRequest("web", "worker", dport=9000, origin=LABEL))),
    ],
)
def test_a_label_line_of_every_action(line, expected):
    assert parse_label_line(line, "web", LABEL) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("web --source 198.51.100.2", "a label's rule starts with its action"),  # no container in a label
        ("add web --source 198.51.100.2", "unrecognized arguments: web"),
        ("docker-fw add --source 198.51.100.2", "a label's rule starts with its action"),
        ("add --dport 80", "--source is mandatory"),
        ("add-internal --source=app", "--dport is mandatory for add-internal"),
        ("add-two-ways --source=203.0.113.1 --dport=80", "add-two-ways needs --source to be another container"),
        ("add --source=web --dport=80", "source and destination are the same"),  # the owner's own name
        ("allow", "the following arguments are required: address"),
        ("allow db", "allow takes IPv4 addresses"),
        ("drop web", "a label's rule starts with its action"),
        ("add --source '198.51.100.2", "No closing quotation"),
        ("add -s 198.51.100.2 --dport 53  # DNS", "unrecognized arguments: # DNS"),  # as in --from: no trailing comment
    ],
)
def test_a_bad_label_line_is_a_rule_error_with_its_label_and_line(line, message):
    with pytest.raises(RuleError) as info:
        parse_label_line(line, "web", LABEL)
    assert info.value.origin == LABEL
    assert message in info.value.message
    assert str(info.value) == f"label docker-fw.rules line 3: {info.value.message}"


def test_an_engine_error_for_a_rule_keeps_its_exit_code_and_names_the_line():
    from docker_fw.errors import EngineError

    exc = FILE.error(EngineError("no such container: web"))
    assert type(exc) is EngineError and exc.exit_code == 3
    assert str(exc) == "rules.txt line 7: no such container: web"
    plain = EngineError("no such container: web")
    assert ARGV.error(plain) is plain  # the command line: the action names it
    located = FILE.error(UsageError("web is a container network address"))
    assert isinstance(located, RuleError) and (located.origin, located.message) == (FILE, "web is a container network address")
    assert LABEL.error(located) is located  # keeps the origin it has
