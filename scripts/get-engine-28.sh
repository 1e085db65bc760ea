#!/usr/bin/env bash
# Fetches Debian sid's docker.io (Docker 28.x) and docker-cli (its client, 28.x)
# and unpacks them into a folder, WITHOUT installing them: the system's own apt
# state, sources and packages are left alone (a private sources list, lists dir
# and cache are used).
#
#   scripts/get-engine-28.sh [DEST]       (default /opt/docker-fw-engines/28)
#
# Afterwards DEST/usr/sbin/dockerd is a 28.x engine; run it with DEST/usr/bin
# and DEST/usr/sbin first on PATH (its docker-proxy) next to the system
# containerd (tests/harness/engines.py does that for the sandbox).
# DEST/usr/bin/docker is a client speaking API >= 1.44: the Docker 29 sandbox
# engine refuses Debian 12's docker CLI (20.10, API 1.41).
# Idempotent: does nothing when DEST already holds both.
set -euo pipefail

DEST="${1:-${DOCKER_FW_ENGINE28_DIR:-/opt/docker-fw-engines/28}}"
SUITE="${DOCKER_FW_ENGINE28_SUITE:-sid}"

if [ -x "$DEST/usr/sbin/dockerd" ] && [ -x "$DEST/usr/bin/docker" ]; then
    echo "get-engine-28: $DEST already holds $("$DEST/usr/sbin/dockerd" --version 2>/dev/null || echo dockerd)" \
         "and its client $("$DEST/usr/bin/docker" --version 2>/dev/null || echo docker)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "get-engine-28: run as root (apt-get update with a private state needs it for the lock files)" >&2
    exit 1
fi

# The mirror this machine already uses for Debian (deb822 or one-line format).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$mirror" ] && break
done
if [ -z "$mirror" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
        [ -n "$mirror" ] && break
    done
fi
mirror="${DOCKER_FW_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

work=$(mktemp -d /tmp/get-engine-28.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
signed=""
[ -r "$keyring" ] && signed="[signed-by=$keyring] "
echo "deb ${signed}${mirror} ${SUITE} main" > "$work/sources.list"
apt_opts=(
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Cache=$work/cache"
    -o "Dir::State::status=/dev/null"
    -o "APT::Architecture=$(dpkg --print-architecture)"
    -o "APT::Sandbox::User=root"
)
echo "get-engine-28: apt-get update ($mirror $SUITE, private state in $work)"
apt-get "${apt_opts[@]}" -qq update
cli_version=$(apt-cache "${apt_opts[@]}" policy docker-cli | awk '/Candidate:/ { print $2 }')
case "$cli_version" in
    2[5-9].*|[3-9][0-9].*) ;;  # API >= 1.44
    *) echo "get-engine-28: $SUITE carries docker-cli '$cli_version', older than 25.0 (API 1.44)" >&2
       exit 1 ;;
esac
mkdir -p "$(dirname "$DEST")"
if [ -x "$DEST/usr/sbin/dockerd" ]; then
    # Only the client is missing (a folder made before the script fetched it):
    # add it beside the engine, which other sandboxes may be running, by one rename.
    echo "get-engine-28: downloading docker-cli $cli_version"
    (cd "$work/dl" && apt-get "${apt_opts[@]}" -qq download docker-cli)
    dpkg -x "$work"/dl/docker-cli_*.deb "$work/cli"
    "$work/cli/usr/bin/docker" --version
    mkdir -p "$DEST/usr/bin"
    cp "$work/cli/usr/bin/docker" "$DEST/usr/bin/.docker.partial.$$"
    mv "$DEST/usr/bin/.docker.partial.$$" "$DEST/usr/bin/docker"
    echo "get-engine-28: docker-cli $cli_version unpacked into $DEST (not installed)"
    exit 0
fi
version=$(apt-cache "${apt_opts[@]}" policy docker.io | awk '/Candidate:/ { print $2 }')
case "$version" in
    28.*|29.*) ;;
    *) if [ -z "${DOCKER_FW_ENGINE_ANY_VERSION:-}" ]; then
           echo "get-engine-28: $SUITE carries docker.io '$version', not 28.x/29.x: set DOCKER_FW_DEBIAN_MIRROR" \
                "to a snapshot (e.g. http://snapshot.debian.org/archive/debian/20251201T000000Z) or" \
                "DOCKER_FW_ENGINE_ANY_VERSION=1" >&2
           exit 1
       fi ;;
esac
echo "get-engine-28: downloading docker.io $version and docker-cli $cli_version"
(cd "$work/dl" && apt-get "${apt_opts[@]}" -qq download docker.io docker-cli)

tmpdest="$DEST.partial.$$"
rm -rf "$tmpdest"
mkdir -p "$tmpdest"
for deb in "$work"/dl/docker.io_*.deb "$work"/dl/docker-cli_*.deb; do
    dpkg -x "$deb" "$tmpdest"
done
"$tmpdest/usr/sbin/dockerd" --version
"$tmpdest/usr/bin/docker" --version
rm -rf "$DEST"
mv "$tmpdest" "$DEST"
echo "get-engine-28: docker.io $version and docker-cli $cli_version unpacked into $DEST (not installed)"
