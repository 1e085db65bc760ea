"""The iptables backend: iptables (IPv4) and ip6tables (IPv6), one instance each.

Everything that knows iptables' syntax lives here: running iptables-save and
iptables-restore (process), the plan of restore lines (reconcile), Docker's
FORWARD chain layouts that 'init' reshapes (layouts), and a walker that says
what a filter table does with a packet (walk).

The package imports nothing itself, so that importing one module (process,
for the runner) does not load the rest.  Import IptablesBackend from .backend.
"""
