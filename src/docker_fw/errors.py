"""Errors, each with the process exit code the CLI maps it to.

The exit codes are documented in the README and in ``docker-fw --help``:

====  =====================================================================
0     success (``replay --dry-run``: nothing would change)
1     ``replay --dry-run``: something would change
2     bad usage or invalid input (nothing was changed)
3     Docker engine problem: unreachable, unknown or stopped container, or a
      container's hosts file docker-fw will not read or write
4     firewall problem: iptables missing, batch rejected, unknown layout,
      iptables-save/-restore past its deadline
5     state store problem: locked by another run, unreadable, damaged or unsafe, disk full
====  =====================================================================
"""


class DockerFwError(Exception):
    """Base class: a one-line message meant for the user."""

    exit_code = 2


class UsageError(DockerFwError):
    """The command line or an input file is invalid."""

    exit_code = 2


class EngineError(DockerFwError):
    """The Docker engine could not answer what we need."""

    exit_code = 3


class FirewallError(DockerFwError):
    """iptables is missing, refused a batch, or the layout is unknown."""

    exit_code = 4


class StoreError(DockerFwError):
    """The state store is locked, unreadable, damaged, unsafe or not writable."""

    exit_code = 5


EXIT_OK = 0
EXIT_PENDING_CHANGES = 1
