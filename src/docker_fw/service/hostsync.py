"""/etc/hosts entries (add-two-ways): which files, with which lines; the file I/O is hosts.py's."""

from __future__ import annotations

from ..values import dataclass
from typing import TYPE_CHECKING

from .. import hosts
from ..errors import EngineError
from .core import ServiceCore

if TYPE_CHECKING:  # annotations only: 'ls' and '--help' do not load the engine module
    from ..engine import Snapshot

# (container, one-line message): a hosts file that could not be read or written.
HostsFailure = tuple[str, str]


@dataclass(frozen=True)
class HostsTarget:
    """A running container's hosts file (its HostsPath) and the entries it must hold."""

    owner: str
    path: str
    entries: dict[str, str]  # name -> address

    def failure(self, verb: str, exc: Exception) -> HostsFailure:
        return self.owner, f"cannot {verb} {self.owner}'s hosts file {hosts.shown(self.path)}: {exc}"


def raise_first(failed: list[HostsFailure]) -> None:
    if failed:
        raise EngineError(failed[0][1])


def hosts_not_updated(failed: list[HostsFailure], dry_run: bool = False) -> EngineError:
    """The error a command ends with after it did all it could but these hosts files."""
    names = ", ".join(owner for owner, _ in failed)
    if dry_run:
        return EngineError(f"hosts file of {names} cannot be updated (see the warning)")
    return EngineError(f"hosts file of {names} not updated (see the warning); everything else was applied")


class HostsSync(ServiceCore):
    """The hosts files of running containers, kept in line with the recorded entries."""

    def _hosts_mapping(self, owner: str, snapshot: Snapshot) -> dict[str, str]:
        """name -> address lines that a running container's hosts file must hold."""
        container = snapshot.find(owner)
        mapping: dict[str, str] = {}
        for name in self.store.host_entries([owner]).get(owner, []):
            target = snapshot.find(name)
            if target is None or not target.has_address:
                # Same reason as for rules: the name must not point at an
                # address that may be handed to another container.
                self.warn(f"hosts entry for {name} in {owner} not applied: {name} is not running")
                continue
            shared = sorted(
                {e.network for e in container.endpoints} & {e.network for e in target.endpoints}
            )
            if not shared:
                self.warn(f"hosts entry for {name} in {owner} not applied: they share no network")
                continue
            mapping[name] = next(e.ip for e in target.endpoints if e.network == shared[0])
        return mapping

    def _hosts_targets(self, owners: set[str]) -> tuple[list[HostsTarget], list[HostsFailure]]:
        """The hosts files of these containers (those running), with the entries each must
        hold; and the containers whose file cannot even be located."""
        snapshot = self.engine.snapshot()
        targets: list[HostsTarget] = []
        failed: list[HostsFailure] = []
        for owner in sorted(owners):
            container = snapshot.find(owner)
            if container is None or not container.has_address:
                continue  # Docker writes a fresh file when it starts
            try:
                path = self.engine.inspect(container.id).get("HostsPath")
            except EngineError as exc:  # e.g. removed since the snapshot
                failed.append((owner, f"cannot locate {owner}'s hosts file: {exc}"))
                continue
            if path:
                targets.append(HostsTarget(owner, path, self._hosts_mapping(owner, snapshot)))
        return targets, failed

    def _hosts_changes(self, owners: set[str]) -> tuple[list[HostsTarget], list[HostsFailure]]:
        """The hosts files that must change (read, not written); and those that cannot be read."""
        targets, failed = self._hosts_targets(owners)
        changes = []
        for target in targets:
            try:
                current = hosts.read_hosts(target.path)
            except hosts.HostsFileError as exc:
                failed.append(target.failure("read", exc))
                continue
            if hosts.render_hosts(current, target.entries) != current:
                changes.append(target)
        return changes, failed

    def _write_hosts(self, targets: list[HostsTarget]) -> list[HostsFailure]:
        """Rewrite each hosts file that needs it; those that cannot be written are returned,
        the others written all the same."""
        failed = []
        for target in targets:
            try:
                changed = hosts.update_hosts_file(target.path, target.entries)
            except hosts.HostsFileError as exc:
                failed.append(target.failure("update", exc))
                continue
            if changed:
                self.out(f"{target.owner}: /etc/hosts updated")
        return failed

    def _apply_hosts(self, owners: set[str]) -> list[HostsFailure]:
        """Bring these containers' hosts files in line with the record.

        A file that cannot be read or written (its container controls it: see
        hosts.py) is warned about and returned; it stops neither the other
        files nor the caller, so one container cannot hold up the others'
        entries or rules ('watch' tries it again on its next batch).
        """
        targets, failed = self._hosts_targets(owners)
        failed += self._write_hosts(targets)
        return self._warn_hosts(failed)

    def _warn_hosts(self, failed: list[HostsFailure]) -> list[HostsFailure]:
        for _owner, message in failed:
            self.warn(message)
        return failed
