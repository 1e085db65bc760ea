"""The service layer, by concern.

``actions.Service`` is assembled from these: core (what every action shares:
backends, store, the plan of recorded rules), layout ('init'), hostsync
(/etc/hosts entries of add-two-ways) and start (save-hostconfig, start).
The rule actions themselves (add, allow, drop, rename, replay, check, gc)
are in actions.py.
"""
