"""The README documents every --json key the code emits, and emits every key it documents.

The keys are an interface (jsonout.py: added, never renamed or dropped), so
the README's tables and key lists are compared with real documents: those
of 'ls', 'check', 'replay --dry-run' and 'explain' run through cli.run over
the 20.10 layout, 'graph --format json' over a graph with egress locks and
label rules, and 'log --json' over a logged packet.
"""

from __future__ import annotations

import dataclasses
import json
import re

from dfw_samples import REPO
from test_explain import CLI, CLIENT, NETWORKS, WEB, ctr, run  # noqa: F401 (run: a fixture)
from test_graph import locked_graph

from docker_fw import blocklog, graph
from docker_fw.engine import Snapshot
from docker_fw.labels import RULES_LABEL

README = (REPO / "README.md").read_text()


def section(heading: str) -> str:
    """The README's text under HEADING, down to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = README.index(f"\n{heading}\n") + 1
    following = re.compile(rf"^#{{1,{level}}} ", re.M)
    found = following.search(README, start + len(heading) + 1)
    return README[start:found.start() if found else len(README)]


def paragraph(text: str, start: str) -> str:
    """From START to the next blank line."""
    at = text.index(start)
    end = text.find("\n\n", at)
    return text[at:end if end >= 0 else len(text)]


def table_after(text: str, start: str) -> str:
    """The table that follows START (its first row to the next blank line)."""
    at = text.index("\n|", text.index(start))
    end = text.find("\n\n", at)
    return text[at:end if end >= 0 else len(text)]


def ticked(text: str) -> set[str]:
    """The words a text writes as code (`key`), and the keys of JSON it quotes
    ({"key": ...}, or a list of keys {"a", "b"})."""
    return set(re.findall(r"`([a-z_][a-z0-9_]*)`", text)) | set(re.findall(r'"([a-z_][a-z0-9_]*)"\s*[:,}]', text))


def first_column(table: str) -> set[str]:
    """The keys a README table names in its first column."""
    keys: set[str] = set()
    for row in table.splitlines():
        cells = re.split(r"(?<!\\)\|", row)
        if row.startswith("|") and len(cells) > 2 and not set(cells[1].strip()) <= set("-"):
            keys |= ticked(cells[1])
    return keys - {"key"}


def command_row(command: str) -> set[str]:
    """The keys in the document column of the JSON section's row for COMMAND."""
    row = next(line for line in section("## JSON output").splitlines() if line.startswith(f"| `{command}` |"))
    document = re.split(r"(?<!\\)\|", row)[2]
    spans = " ".join(document.split("`")[1::2])  # its code spans: the documents, written as JSON
    return set(re.findall(r'"([a-z_][a-z0-9_]*)"', spans))


def keys(value) -> set[str]:
    """Every key of a JSON value, at every depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


RULE_KEYS = first_column(table_after(section("## JSON output"), "A **rule** object"))


def test_the_rule_table_is_what_ls_emits_for_store_and_label_rules(run):
    run("add-internal", "web", "--source", "cli", "--dport", "80")
    labelled = dataclasses.replace(WEB, labels=((RULES_LABEL, f"allow {CLIENT}\negress deny\n"),))
    run.engine.snap = Snapshot([labelled, CLI], NETWORKS[:1])
    doc = json.loads(run("ls", "--json")[1][0])
    assert set(doc) == command_row("ls") == {"rules", "egress"}
    assert len(doc["rules"]) == 2 and RULE_KEYS
    for rule in doc["rules"]:
        assert set(rule) == RULE_KEYS, set(rule) ^ RULE_KEYS
    egress_doc = ticked(paragraph(section("## JSON output"), "An **egress** object"))
    (lock,) = doc["egress"]
    assert set(lock) <= egress_doc, set(lock) - egress_doc


def test_check_and_replay_emit_what_their_rows_say(run):
    doc = json.loads(run("check", "--json")[1][0])
    assert doc["problems"] and keys(doc) == command_row("check")
    run("init")
    run("allow", "web", CLIENT)
    run.engine.snap = Snapshot([ctr("web", "172.17.0.9", ports=WEB.ports), CLI], NETWORKS[:1])
    doc = json.loads(run("replay", "--dry-run", "--json")[1][0])
    documented = command_row("replay --dry-run")
    assert doc["changes"] and set(doc) <= documented and keys(doc) <= documented, keys(doc) - documented
    top = {k for k in documented if k in ("pending", "changes", "hosts", "withdrawn", "hosts_failed", "unmanaged")}
    assert set(doc) == top


def test_explain_emits_what_its_row_and_path_list_say(run):
    run("init")
    doc = json.loads(run("explain", "-s", CLIENT, "-d", "web", "--dport", "80", "--json")[1][0])
    row = command_row("explain")
    assert set(doc) | keys(doc["source"]) <= row, (set(doc) | keys(doc["source"])) - row
    (path,) = doc["paths"]
    path_doc = ticked(paragraph(section("## JSON output"), "An `explain` **path**"))
    suggestion = path["suggestion"]
    for emitted in (set(path), set(path["flow"]), set(suggestion) - {"rule"}):
        assert emitted <= path_doc, emitted - path_doc
    assert set(suggestion["rule"]) == RULE_KEYS


def test_graph_json_keys_are_its_table():
    doc = json.loads(graph.render(locked_graph(), "json"))
    table = table_after(section("### graph"), "`--format json` prints one object")
    emitted = keys(doc) - {"version"}
    assert doc["egress"] and any(f["label"] for f in doc["flows"])
    assert emitted <= ticked(table), emitted - ticked(table)
    assert first_column(table) <= emitted, first_column(table) - emitted


def test_log_json_keys_are_its_list():
    event = blocklog.Blocked(1796199745.3745, "198.51.100.3", 37665, "172.17.0.2", 80, "tcp", "eth0", "docker0")
    emitted = set(json.loads(blocklog.as_json(event, {"172.17.0.2": "web"})))
    listed = ticked(paragraph(section("### log"), "`--json` prints one object a line").split("```")[0])
    assert emitted == listed - {"json"}, emitted ^ (listed - {"json"})
