"""The nftables backend, for Docker 29's nftables firewall mode: one table per family.

Everything that speaks nftables lives here: running nft (process), the rules
as nft's JSON and syntax (rules), what is read of docker-fw's table and of
Docker's (live), and the backend (backend).  Import NftablesBackend from
.backend: importing the package imports nothing.
"""
