"""save-hostconfig and start: host ports kept across restarts, dependency order,
each container protected as soon as it runs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .. import depgraph, hostconfig
from ..errors import DockerFwError, EngineError, PortInUseError, UsageError
from .core import ServiceCore

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from ..engine import Snapshot


class StartActions(ServiceCore):
    """save-hostconfig and start; a started container's rules come from Service.sync."""

    def save_hostconfig(self, containers: list[str]) -> None:
        snapshot = self.engine.snapshot()
        records = {}
        for ref in containers:
            container = snapshot.get(ref)
            if container.state != "running":
                raise EngineError(f"container {container.name} is {container.state}: save-hostconfig needs it running")
            records[container.name] = hostconfig.record(self.engine.inspect(container.id))
        with self.store.transaction():
            for name, config in records.items():
                self.store.save_hostconfig(name, config)
        for name, config in records.items():
            ports = ", ".join(
                f"{port}->{','.join(b['HostPort'] for b in bindings)}"
                for port, bindings in config["bindings"].items()
            )
            self.out(f"{name}: host configuration saved" + (f" (ports {ports})" if ports else ""))

    @staticmethod
    def _dependencies(name: str, info: dict, snapshot: Snapshot) -> list[str]:
        found = []
        for ref in hostconfig.dependencies(info):
            dep = snapshot.find(ref)
            if dep is None:
                raise EngineError(f"{name} depends on container {ref}, which does not exist")
            found.append(dep.name)
        return found

    def start_order(self, containers: list[str], pull_deps: bool) -> tuple[list[str], dict]:
        """Dependency order of the selection (and, with pull_deps, its dependencies)."""
        if not containers:
            raise UsageError("start: name at least one container")
        snapshot = self.engine.snapshot()
        selected = [snapshot.get(ref).name for ref in containers]
        inspects: dict[str, dict] = {}

        def info(name: str) -> dict:
            if name not in inspects:
                inspects[name] = self.engine.inspect(snapshot.get(name).id)
            return inspects[name]

        chosen = set(selected)

        def deps(name: str) -> list[str]:
            # Without --pull-deps, a dependency that is running already is
            # satisfied, selected or not; --pull-deps lists it (and leaves it running).
            return [
                d for d in self._dependencies(name, info(name), snapshot)
                if pull_deps or d in chosen or snapshot.get(d).state not in ("running", "paused")
            ]

        try:
            order = depgraph.start_order(selected, deps, pull_deps=pull_deps)
        except (depgraph.DependencyCycleError, depgraph.MissingDependencyError) as exc:
            raise UsageError(str(exc)) from None
        return order, {name: info(name) for name in order}

    def _start_one(self, name: str, container_id: str, saved: dict, pin: bool) -> None:
        """Start, asking for the saved host ports; without them if they are taken."""
        if not (pin and saved.get("dynamic") and saved.get("bindings")):
            self.engine.start(container_id)
            return
        try:
            self.engine.start(container_id, saved["bindings"])
        except PortInUseError as exc:
            # Another container holds the port now.  Start with engine-chosen
            # ports for the dynamic ones rather than not at all; the changed
            # ports are reported after the start.
            self.warn(f"{name}: could not get its saved host ports back ({exc}); starting with new ones")
            self.engine.start(container_id, hostconfig.unpinned(saved))

    def start(
        self,
        containers: list[str],
        dry_run: bool = False,
        paused: bool = False,
        pull_deps: bool = False,
        jobs: int = 1,
    ) -> list[str]:
        """Start containers in dependency order, protecting each as soon as it runs."""
        order, inspects = self.start_order(containers, pull_deps)
        saved_configs = {name: self.store.hostconfig(name) or {} for name in order}
        # Refuse before anything is started (and say so in a dry run too).
        for name in order:
            if saved_configs[name] and not inspects[name]["State"]["Running"]:
                changed = hostconfig.wiring_changes(saved_configs[name], inspects[name])
                if changed:
                    raise UsageError(
                        f"container {name}: host configuration changed since it was saved "
                        f"({', '.join(changed)}); check it, run 'docker-fw save-hostconfig {name}', "
                        "then start again"
                    )
        if dry_run:
            for name in order:
                self.out(name)
            return order
        pin = False
        if any(not inspects[n]["State"]["Running"] and saved_configs[n].get("dynamic") for n in order):
            pin = self.engine.accepts_start_with_hostconfig()
        # Starting runs in parallel across independent branches (jobs > 1);
        # firewall and hosts updates, output and the store stay serialised.
        serial = threading.Lock()

        def bring_up(name: str) -> None:
            info = inspects[name]
            if info["State"]["Running"]:  # True for paused containers too: left as they are
                with serial:
                    self.out(name)
                return
            self._start_one(name, info["Id"], saved_configs[name], pin)
            if paused:
                self.engine.pause(info["Id"])
            with serial:
                self.engine.snapshot(refresh=True)
                # Replay at once, so no container waits for the others.
                self.sync({name})
                self._save_after_start(name, info["Id"], saved_configs[name])
                self.out(name)

        if jobs <= 1:
            for name in order:
                bring_up(name)
            return order
        snapshot = self.engine.snapshot()
        deps = {name: self._dependencies(name, inspects[name], snapshot) for name in order}
        try:
            depgraph.run_parallel(order, deps, bring_up, max_workers=jobs)
        except depgraph.NodeFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, DockerFwError):
                raise type(cause)(f"{exc.node}: {cause}") from None
            raise
        return order

    def _save_after_start(self, name: str, container_id: str, saved: dict) -> None:
        """Record the host ports it got; report those that differ from the saved ones."""
        now = self.engine.inspect(container_id)
        changes = hostconfig.port_changes(saved, now) if saved else []
        if changes:
            self.warn(f"{name}: host ports changed: {'; '.join(changes)}")
        with self.store.transaction():
            self.store.save_hostconfig(name, hostconfig.record(now, previous=saved or None))
