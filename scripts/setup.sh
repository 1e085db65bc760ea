#!/usr/bin/env bash
# Installs what docker-fw's demo, tests and benchmarks need on Debian/Ubuntu,
# then docker-fw itself into ./.venv.  Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (sudo): the demo and tests start a sandbox Docker engine" >&2
    exit 2
fi

# command -> Debian package
# The graph tests render with Graphviz (dot) and open the html in a headless
# Chromium; the blocked-connection log tests run ulogd2 (with its JSON output
# plugin) in the sandbox's namespace.
declare -A packages=(
    [dockerd]=docker.io [iptables]=iptables [busybox]=busybox-static
    [nsenter]=util-linux [ip]=iproute2 [python3]=python3 [nft]=nftables
    [dot]=graphviz [chromium]=chromium [ulogd]=ulogd2
)
missing=()
for cmd in "${!packages[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
compgen -G '/usr/lib/*/ulogd/ulogd_output_JSON.so' >/dev/null || missing+=(ulogd2-json)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    # Installing docker.io would start the host's Docker engine (and let it
    # rewrite the host's firewall) on machines with an init system; the demo
    # and tests run their own engine in a network namespace, so keep service
    # starts off during the install.
    policy=/usr/sbin/policy-rc.d
    created_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    trap '[ -n "$created_policy" ] && rm -f "$policy"' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: docker-fw $(.venv/bin/docker-fw --version | cut -d' ' -f2) in $(pwd)/.venv"
