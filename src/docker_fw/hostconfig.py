"""What 'save-hostconfig' records and 'start' checks: pure functions on inspect data.

Docker assigns a dynamically published port (``-P``, ``-p 80``) a new host
port on every start; the port it got exists only in
``NetworkSettings.Ports``.  docker-fw records those bindings so that 'start'
can ask for the same host ports again (engine API 1.23 accepts a start with
a HostConfig body), and records the parts of the host configuration that
decide how a container is wired, to refuse a start when they changed behind
its back.
"""

from __future__ import annotations

from typing import Any


def dependencies(inspect: dict[str, Any]) -> list[str]:
    """References (names or ids) of the containers this one needs started first.

    Legacy links (``/db:/web/alias``), ``--volumes-from`` (``data:ro``) and
    ``--network container:X``.
    """
    host_config = inspect.get("HostConfig") or {}
    deps: list[str] = []
    for link in host_config.get("Links") or []:
        deps.append(link.split(":", 1)[0].lstrip("/"))
    for source in host_config.get("VolumesFrom") or []:
        deps.append(source.split(":", 1)[0])
    mode = host_config.get("NetworkMode") or ""
    if mode.startswith("container:"):
        deps.append(mode.split(":", 1)[1])
    return list(dict.fromkeys(deps))


def is_dynamic(host_config: dict[str, Any]) -> bool:
    """Whether the engine picks (some of) the host ports at each start."""
    if host_config.get("PublishAllPorts"):
        return True
    for bindings in (host_config.get("PortBindings") or {}).values():
        for binding in bindings or []:
            if not binding.get("HostPort"):
                return True
    return False


def effective_bindings(inspect: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The host ports the engine assigned, in PortBindings form (for a start body)."""
    ports = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    result: dict[str, list[dict[str, str]]] = {}
    for port, bindings in sorted(ports.items()):
        if not bindings:
            continue  # exposed, not published
        seen = []
        for b in bindings:
            # An engine binding 0.0.0.0 and :: reports the same port twice;
            # one empty HostIp binding asks for both again.
            host_ip = "" if b.get("HostIp") in ("0.0.0.0", "::", "") else b["HostIp"]
            entry = {"HostIp": host_ip, "HostPort": str(b.get("HostPort", ""))}
            if entry not in seen:
                seen.append(entry)
        result[port] = seen
    return result


def wiring(inspect: dict[str, Any]) -> dict[str, Any]:
    """The parts of the host configuration that a saved one must agree with.

    Host port numbers are left out on purpose: pinning them (which 'start'
    does) changes them, and that is not an inconsistency.
    """
    host_config = inspect.get("HostConfig") or {}
    return {
        "links": sorted(host_config.get("Links") or []),
        "volumes_from": sorted(host_config.get("VolumesFrom") or []),
        "network_mode": host_config.get("NetworkMode") or "",
        "published": sorted((host_config.get("PortBindings") or {}).keys()),
        "publish_all": bool(host_config.get("PublishAllPorts")),
    }


def record(inspect: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """What save-hostconfig stores for a running container.

    ``declared`` keeps the port bindings as the container was created with
    (``HostPort`` '' for dynamic ones): pinning saved ports writes fixed
    numbers into the HostConfig, so a later save keeps the previous record's
    declared bindings, to know which ports may move when a pin fails.
    """
    host_config = inspect.get("HostConfig") or {}
    if previous and "declared" in previous:
        declared = previous["declared"]
        publish_all = bool(previous.get("publish_all"))
    else:
        declared = host_config.get("PortBindings") or {}
        publish_all = bool(host_config.get("PublishAllPorts"))
    return {
        "id": inspect["Id"],
        "wiring": wiring(inspect),
        "bindings": effective_bindings(inspect),
        "declared": declared,
        "publish_all": publish_all,
        "dynamic": is_dynamic({"PortBindings": declared, "PublishAllPorts": publish_all}),
    }


def unpinned(saved: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The saved bindings with the dynamic ones left to the engine again.

    Ports declared with a fixed host port keep it; the others ask for any.
    """
    declared = saved.get("declared") or {}
    result = {}
    for port, bindings in (saved.get("bindings") or {}).items():
        fixed = [b for b in declared.get(port) or [] if b.get("HostPort")]
        result[port] = fixed or [{"HostIp": b.get("HostIp", ""), "HostPort": ""} for b in bindings]
    return result


def wiring_changes(saved: dict[str, Any], inspect: dict[str, Any]) -> list[str]:
    """Names of the wiring fields that differ from the saved record."""
    now = wiring(inspect)
    before = saved.get("wiring") or {}
    return [key for key in now if before.get(key) != now[key]]


def port_changes(saved: dict[str, Any], inspect: dict[str, Any]) -> list[str]:
    """Human-readable host port changes, e.g. '80/tcp: 32768 -> 32771'."""
    before = saved.get("bindings") or {}
    after = effective_bindings(inspect)
    changes = []
    for port in sorted(set(before) | set(after)):
        old = ",".join(b["HostPort"] for b in before.get(port, [])) or "none"
        new = ",".join(b["HostPort"] for b in after.get(port, [])) or "none"
        if old != new:
            changes.append(f"{port}: {old} -> {new}")
    return changes
