#!/usr/bin/env bash
# Fetches packages of Debian sid and unpacks them into one folder, WITHOUT
# installing them: the system's own apt state, sources and packages are left
# alone (a private sources list, lists dir and cache are used).  Used for the
# 28.x engine and its client (scripts/get-engine-28.sh) and the Compose client
# (scripts/get-compose.sh).
#
#   scripts/get-sid-package.sh DEST PACKAGE:VERSIONS:BINARY [PACKAGE:VERSIONS:BINARY ...]
#
# VERSIONS: a case pattern the candidate version must match ('28.*|29.*');
# BINARY: the file inside DEST that proves the package is there, run with
# --version (or 'version') after unpacking.  Idempotent: does nothing when
# every BINARY exists.  When DEST holds the first package's BINARY but lacks
# another's (a folder made before that package was added to the list), each
# missing BINARY alone is added beside what is there, by one rename each:
# another sandbox may be running what DEST holds.  Otherwise DEST is made whole
# in a temporary folder and renamed into place.
#
# Environment: DOCKER_FW_DEBIAN_SUITE (default sid), DOCKER_FW_DEBIAN_MIRROR
# (default: the Debian mirror this machine uses, else deb.debian.org),
# DOCKER_FW_ANY_VERSION=1 (take whatever version the suite carries),
# DOCKER_FW_GET_NAME (the name messages start with).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 DEST PACKAGE:VERSIONS:BINARY [PACKAGE:VERSIONS:BINARY ...]" >&2
    exit 2
fi
DEST="$1"
shift
SUITE="${DOCKER_FW_DEBIAN_SUITE:-sid}"
packages=() versions=() binaries=()
for spec in "$@"; do
    IFS=: read -r package pattern binary <<<"$spec"
    if [ -z "$package" ] || [ -z "$pattern" ] || [ -z "$binary" ]; then
        echo "$0: not PACKAGE:VERSIONS:BINARY: '$spec'" >&2
        exit 2
    fi
    packages+=("$package") versions+=("$pattern") binaries+=("$binary")
done
me="${DOCKER_FW_GET_NAME:-get-sid-package(${packages[*]})}"

missing=()  # indexes of the packages whose BINARY DEST lacks
for i in "${!packages[@]}"; do
    [ -x "$DEST/${binaries[$i]}" ] || missing+=("$i")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "$me: $DEST already holds ${binaries[*]}"
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
tmpdest="$DEST.partial.$$"
trap 'rm -rf "$work" "$tmpdest"' EXIT
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

# Whether VERSION matches one of the '|'-separated case patterns of PATTERNS
# ('|' in a pattern that comes from a variable is no alternation to case).
matches() {
    local version="$1" alternatives alternative
    IFS='|' read -ra alternatives <<<"$2"
    for alternative in "${alternatives[@]}"; do
        # shellcheck disable=SC2254  # a pattern on purpose
        case "$version" in $alternative) return 0 ;; esac
    done
    return 1
}

# Every version is checked before anything is downloaded: all or nothing.
fetch=() got=()
for i in "${missing[@]}"; do
    package="${packages[$i]}"
    version=$(apt-cache "${apt_opts[@]}" policy "$package" | awk '/Candidate:/ { print $2 }')
    if ! matches "$version" "${versions[$i]}" && [ -z "${DOCKER_FW_ANY_VERSION:-}" ]; then
        echo "$me: $SUITE carries $package '$version', not ${versions[$i]}: set DOCKER_FW_DEBIAN_MIRROR" \
             "to a snapshot (e.g. http://snapshot.debian.org/archive/debian/20251201T000000Z) or" \
             "DOCKER_FW_ANY_VERSION=1" >&2
        exit 1
    fi
    fetch+=("$package") got+=("$package $version")
done
echo "$me: downloading ${got[*]}"
(cd "$work/dl" && apt-get "${apt_opts[@]}" -qq download "${fetch[@]}")

rm -rf "$tmpdest"
mkdir -p "$tmpdest"
for package in "${fetch[@]}"; do
    dpkg -x "$(ls "$work/dl/${package}_"*.deb)" "$tmpdest"
done
for i in "${missing[@]}"; do
    "$tmpdest/${binaries[$i]}" --version 2>/dev/null || "$tmpdest/${binaries[$i]}" version
done
mkdir -p "$(dirname "$DEST")"
if [ "${missing[0]}" -ne 0 ]; then  # the first package is there: add the others' binaries beside it
    added=()
    for i in "${missing[@]}"; do
        binary="${binaries[$i]}"
        mkdir -p "$(dirname "$DEST/$binary")"
        cp "$tmpdest/$binary" "$DEST/$binary.partial.$$"
        mv "$DEST/$binary.partial.$$" "$DEST/$binary"
        added+=("$binary")
    done
    echo "$me: ${got[*]}: ${added[*]} added to $DEST (not installed)"
else
    rm -rf "$DEST"
    mv "$tmpdest" "$DEST"
    echo "$me: ${got[*]} unpacked into $DEST (not installed)"
fi
