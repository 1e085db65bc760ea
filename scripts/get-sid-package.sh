#!/usr/bin/env bash
# Fetches one package of Debian sid and unpacks it into a folder, WITHOUT
# installing it: the system's own apt state, sources and packages are left
# alone (a private sources list, lists dir and cache are used).  Used for the
# Compose client (scripts/get-compose.sh).
#
#   scripts/get-sid-package.sh PACKAGE DEST VERSIONS BINARY
#
# VERSIONS: a case pattern the candidate version must match ('28.*|29.*');
# BINARY: the file inside DEST that proves the unpacking worked, run with
# --version (or 'version') afterwards.  Idempotent: does nothing when
# DEST/BINARY exists.
set -euo pipefail

PACKAGE="$1" DEST="$2" VERSIONS="$3" BINARY="$4"
SUITE="${DOCKER_FW_DEBIAN_SUITE:-sid}"
me="get-sid-package($PACKAGE)"

if [ -x "$DEST/$BINARY" ]; then
    echo "$me: $DEST already holds $BINARY"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "$me: run as root (apt-get update with a private state needs it for the lock files)" >&2
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

work=$(mktemp -d /tmp/get-sid-package.XXXXXX)
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
echo "$me: apt-get update ($mirror $SUITE, private state in $work)"
apt-get "${apt_opts[@]}" -qq update
version=$(apt-cache "${apt_opts[@]}" policy "$PACKAGE" | awk '/Candidate:/ { print $2 }')
# shellcheck disable=SC2254  # VERSIONS is a pattern on purpose
case "$version" in
    $VERSIONS) ;;
    *) if [ -z "${DOCKER_FW_ANY_VERSION:-}" ]; then
           echo "$me: $SUITE carries $PACKAGE '$version', not $VERSIONS: set DOCKER_FW_DEBIAN_MIRROR" \
                "to a snapshot (e.g. http://snapshot.debian.org/archive/debian/20251201T000000Z) or" \
                "DOCKER_FW_ANY_VERSION=1" >&2
           exit 1
       fi ;;
esac
echo "$me: downloading $PACKAGE $version"
(cd "$work/dl" && apt-get "${apt_opts[@]}" -qq download "$PACKAGE")
deb=$(ls "$work/dl/${PACKAGE}_"*.deb)

tmpdest="$DEST.partial.$$"
rm -rf "$tmpdest"
mkdir -p "$tmpdest"
dpkg -x "$deb" "$tmpdest"
"$tmpdest/$BINARY" --version 2>/dev/null || "$tmpdest/$BINARY" version
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmpdest" "$DEST"
echo "$me: $PACKAGE $version unpacked into $DEST (not installed)"
