"""Runs one docker-fw firewall operation in the current network namespace.

The netns tests start it with ``nsenter --net=/var/run/netns/NAME python
fw_helper.py``, because docker_fw.backends.iptables.process.Iptables runs iptables-save and
iptables-restore in the namespace of its own process.  It reads one JSON
request on standard input and prints one JSON answer:

    {"op": "save"}                                   -> {"chains": {...}, "rules": [{"chain", "args", "line", "comment"}]}
    {"op": "restore", "lines": [...]}                -> {}   (reads the table first, as 'before')
    {"op": "plan" | "sync", "desired": [...], "scope": [...] | null}
                                                     -> {"lines": [...], "notes": [...]}
                                                        (ensure_chains + plan_rules; sync applies them;
                                                        a note is what a '-D CHAIN N' line deletes)
    {"op": "plan_init" | "init", "bridges": [...]}   -> {"lines": [...]}   (layouts.plan_init; init applies it)

A request with "family": 6 runs ip6tables-save/-restore instead (desired
rules of family 6 only are planned).

Every answer has "ok"; a docker-fw error gives ok=false with "type", "error"
and "exit_code".  "restores" counts the iptables-restore runs.  A desired
rule is {"owner", "chain", "matches", "target"[, "family", "last"]} (a
backends.iptables.rules.IptablesRule).
"""

from __future__ import annotations

import json
import pathlib
import sys

# Test this checkout's code, whatever is installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "src"))

from docker_fw.backends.iptables import layouts, reconcile  # noqa: E402
from docker_fw.errors import DockerFwError  # noqa: E402
from docker_fw.backends.iptables.process import Iptables  # noqa: E402
from docker_fw.backends.iptables.rules import CHAIN_EGRESS, IptablesRule  # noqa: E402


def _desired(items: list[dict]) -> list[IptablesRule]:
    return [
        IptablesRule(d["owner"], d["chain"], tuple(d["matches"]), d["target"], d.get("family", 4), d.get("last", False))
        for d in items
    ]


def handle(request: dict, fw: Iptables) -> dict:
    op = request["op"]
    table_name = request.get("table", "filter")
    if op == "save":
        table = fw.save(table_name)
        return {
            "chains": table.chains,
            "rules": [
                {"chain": r.chain, "args": list(r.args), "line": r.line, "comment": r.comment}
                for r in table.rules
            ],
        }
    if op == "restore":
        # read first, as docker-fw's actions plan against a table: a failed
        # restore is judged against it
        fw.restore(table_name, request["lines"], before=fw.save(table_name))
        return {}
    if op in ("plan", "sync"):
        scope = request.get("scope")
        table = fw.save()
        desired = _desired(request["desired"])
        egress = any(r.chain == CHAIN_EGRESS for r in desired)
        changes = reconcile.ensure_chains(table, fw.family, egress=egress) + reconcile.plan_rules(
            table, desired, None if scope is None else set(scope), fw.family
        )
        lines = [c.line for c in changes]
        if op == "sync":
            fw.restore("filter", lines, shown=[c.shown for c in changes], before=table)
        return {"lines": lines, "notes": [c.note for c in changes]}
    if op in ("plan_init", "init"):
        table = fw.save()
        lines = [c.line for c in layouts.plan_init(table, request["bridges"], family=request.get("family", 4))]
        if op == "init":
            fw.restore("filter", lines, before=table)
        return {"lines": lines}
    raise SystemExit(f"fw_helper: unknown op {op!r}")


def main() -> None:
    request = json.load(sys.stdin)
    fw = Iptables(family=request.get("family", 4))
    try:
        answer = {"ok": True, **handle(request, fw)}
    except DockerFwError as exc:
        answer = {"ok": False, "type": type(exc).__name__, "error": str(exc), "exit_code": exc.exit_code}
    answer["restores"] = fw.restores
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
