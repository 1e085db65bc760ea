"""Fuzz: the log file's lines and --metrics ADDR:PORT, the two inputs of issue #13 a
person or a packet shapes.  A line is a Blocked record with bounded fields or None,
never an exception ('docker-fw log --follow' must not stop on one line); a
listen address is taken as an address and a port, or refused with UsageError."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given
from hypothesis import strategies as st

from docker_fw import blocklog, metrics
from docker_fw.errors import UsageError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["oob.prefix", "src_ip", "dest_ip", "ip.protocol", "ip6.nexthdr", "oob.time.sec", "oob.time.usec",
          "src_port", "dest_port", "oob.in", "oob.out"]
records = st.fixed_dictionaries({}, optional={
    **{key: json_values for key in FIELDS},
    "oob.prefix": st.just(blocklog.NFLOG_PREFIX) | json_values,
    "src_ip": st.sampled_from(["198.51.100.2", "2001:db8::2", "999.1.1.1", ""]) | json_values,
    "dest_ip": st.sampled_from(["172.17.0.2", "fd00::2"]) | json_values,
})


def check(line) -> None:
    event = blocklog.parse_line(line)
    if event is None:
        return
    assert isinstance(event, blocklog.Blocked)
    ipaddress.ip_address(event.src), ipaddress.ip_address(event.dest)
    assert 0 <= event.sport <= 65535 and 0 <= event.dport <= 65535
    shown = blocklog.as_text(event, {event.dest: "web\nx"})  # a name as hostile as a container's
    assert "\n" not in shown and "\n" not in blocklog.as_json(event, {})


@given(records)
def test_a_record_is_an_event_or_nothing(record):
    check(json.dumps(record))
    check(json.dumps(record).encode())


@given(st.binary(max_size=200))
def test_any_bytes_are_an_event_or_nothing(data):
    check(data)


def test_nesting_past_the_parsers_depth_is_nothing():
    assert blocklog.parse_line(b"[" * 10000) is None
    assert blocklog.parse_line(b'{"oob.prefix": ' + b"[" * 5000 + b"]" * 5000 + b"}") is None


@given(st.text(max_size=60) | st.from_regex(r"\[?[0-9a-fA-F:.]{0,42}\]?:[0-9]{0,6}", fullmatch=True))
def test_a_listen_address_is_an_address_and_a_port_or_refused(text):
    try:
        address, port = metrics.parse_listen(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert 1 <= port <= 65535
    assert str(ipaddress.ip_address(address)) == address
