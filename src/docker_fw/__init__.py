"""docker-fw: a whitelisting firewall for Docker hosts whose rules follow containers."""

__version__ = "0.3.0"
