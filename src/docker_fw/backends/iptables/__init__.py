"""The iptables backend: iptables (IPv4) and ip6tables (IPv6), one instance each.

Everything that knows iptables' syntax lives here: running iptables-save and
iptables-restore (process), the plan of restore lines (reconcile), Docker's
FORWARD chain layouts that 'init' reshapes (layouts), and a walker that says
what a filter table does with a packet (walk).
"""

from .backend import IptablesBackend

__all__ = ["IptablesBackend"]
