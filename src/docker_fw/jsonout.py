"""--json output of ls, check, explain and replay --dry-run: one JSON document, one line.

The keys are an interface (documented in the README's "JSON output"
section): add keys, never rename or drop one.  Every document is printed as
one line of ASCII (``ensure_ascii``: a name's non-ASCII or control characters
are escaped), so the output is one line for ``jq`` and for a log.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .labels import LabelledLock, LabelledRule
    from .rulegrammar import Origin
    from .explain import Explanation, Side
    from .flow import Flow
    from .model import RuleSpec
    from .transaction import Plan

# Where a rule (or an egress policy) comes from: the state store (recorded by
# add, allow, add-two-ways, egress), or a line of a container's label, which
# the key "label" then names ({"name": "docker-fw.rules", "line": 3}).
ORIGIN_STORE = "store"
ORIGIN_LABEL = "label"


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"))


def ports_value(ports) -> int | str | None:
    """A rule's ports in JSON: None for any, a number for one port (as before
    ranges and lists), else the text as typed ('9100:9200', '80,443')."""
    if not ports:
        return None
    if not ports.is_list and ports.ranges[0][0] == ports.ranges[0][1] and ":" not in ports.text:
        return ports.ranges[0][0]
    return ports.text


def label_record(origin: Origin | None) -> dict[str, Any] | None:
    """Which label line a rule or lock comes from (None: the store's);
    line 0 for a refused label locked as a whole."""
    return None if origin is None else {"name": origin.name, "line": origin.line}


def rule_record(spec: RuleSpec, action: str | None = None, origin: str = ORIGIN_STORE,
                label: Origin | None = None) -> dict[str, Any]:
    """One recorded rule: what 'ls' prints as a command, field by field."""
    return {
        "action": action or spec.kind.action,
        "container": spec.owner,
        "source": spec.source.text,
        "dest": spec.dest.text,
        "protocol": spec.proto,
        "sport": ports_value(spec.sport),
        "dport": ports_value(spec.dport),
        "icmp_type": spec.icmp_type or None,
        "filter": list(spec.filter),
        "command": spec.describe(action),
        "origin": origin,
        "label": label_record(label),
    }


def ls_document(rules: list[tuple[RuleSpec, str]], egress: dict | None = None,
                label_rules: list[LabelledRule] = (), label_locks: list[LabelledLock] = ()) -> dict[str, Any]:
    """RULES: (spec, the action 'ls' prints it with); EGRESS: container -> its
    recorded egress policy (model.EgressPolicy); then what containers' labels
    ask for (labels.LabelledRule, labels.LabelledLock), with their origin."""
    def policy_record(owner: str, policy, origin: str = ORIGIN_STORE, label: Origin | None = None) -> dict[str, Any]:
        return {"container": owner, "policy": policy.value, "command": policy.command(owner),
                "origin": origin, "label": label_record(label)}

    return {
        "rules": [rule_record(spec, action) for spec, action in rules] + [
            rule_record(r.spec, r.action, ORIGIN_LABEL, r.origin) for r in label_rules
        ],
        "egress": [policy_record(owner, policy) for owner, policy in (egress or {}).items()] + [
            policy_record(lock.owner, lock.policy, ORIGIN_LABEL, lock.origin) for lock in label_locks
        ],
    }


# check's lines, by what they start with (actions.Service.check, service/layout.py).
_PROBLEM_KINDS = (
    ("not initialised", "not-initialised"),
    ("layout", "layout"),
    ("missing", "missing"),
    ("stale", "stale"),
    ("foreign rule", "foreign"),
    ("hosts", "hosts"),
    ("not applied", "not-applied"),  # a recorded rule that cannot be live as it is (refused filter, ...)
)


def problem_kind(line: str) -> str:
    for prefix, kind in _PROBLEM_KINDS:
        if re.match(rf"{prefix}\b", line):
            return kind
    return "other"


def check_document(problems: list[str], notes: list[str], warnings: list[str] = ()) -> dict[str, Any]:
    """PROBLEMS: check's drift lines; NOTES: what it says besides (rules not applied, and why);
    WARNINGS: what is open past the whitelist that docker-fw cannot close (not drift)."""
    return {
        "drift": bool(problems),
        "problems": [{"kind": problem_kind(line), "text": line} for line in problems],
        "notes": notes,
        "warnings": list(warnings),
    }


def replay_document(plan: Plan) -> dict[str, Any]:
    """What 'replay --dry-run' would change."""
    return {
        "pending": bool(plan),
        "changes": [
            {"verb": c.verb, "why": c.why, "line": c.line, "note": c.note, "family": c.family}
            for c in plan.changes
        ],
        "hosts": list(plan.hosts),
        "withdrawn": [{"rule": spec.describe(), "container": spec.owner, "reason": why}
                      for spec, why in plan.withdrawn],
        "hosts_failed": [{"container": owner, "reason": why} for owner, why in plan.hosts_failed],
        "unmanaged": list(plan.unmanaged),
    }


def _side(side: Side) -> dict[str, Any]:
    return {"kind": side.kind, "name": side.name, "spec": side.spec.text}


def _flow(flow: Flow) -> dict[str, Any]:
    return {
        "network": flow.network,
        "src": flow.src,
        "dst": flow.dst,
        "protocol": flow.proto,
        "dport": flow.dport,
        "in": flow.iif,
        "out": flow.oif,
        "family": flow.family,
        "host_port": flow.host_port or None,
    }


def _path_rule(x: Explanation, spec: RuleSpec | None) -> dict[str, Any] | None:
    """The docker-fw rule on an explained path: recorded, or a label's (with its origin)."""
    if spec is None:
        return None
    labelled = x.label_rule(spec)
    if labelled is None:
        return rule_record(spec)
    return rule_record(spec, labelled.action, ORIGIN_LABEL, labelled.origin)


def explain_document(x: Explanation) -> dict[str, Any]:
    paths = []
    for path in x.paths:
        v, s = path.verdict, path.suggestion
        paths.append({
            "flow": _flow(path.flow),
            "verdict": "allowed" if v.allowed else "blocked",
            "table": v.table,
            "chain": v.chain,
            "decided_by": v.decided_by,
            "reason": v.reason,
            "rule": _path_rule(x, v.rule),
            "rule_line": v.rule_line,
            "stale": v.stale,
            "translated": v.translated,
            "trace": list(v.trace),
            "suggestion": None if s is None else {
                "command": s.command,
                "rule": rule_record(s.rule) if s.rule is not None else None,
                "allows": s.allows,
                "note": s.note,
            },
        })
    return {
        "verdict": "allowed" if x.allowed else "blocked",
        "source": _side(x.source),
        "dest": _side(x.dest),
        "protocol": x.proto,
        "dport": x.dport,
        "paths": paths,
    }
