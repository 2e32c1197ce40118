#!/usr/bin/env bash
# Prints the path of a tarball holding a Debian 12 root file system made with
# `debootstrap --variant=minbase` plus PACKAGES (comma-separated, or empty for
# minbase alone), building it first when it is not cached.
#
# Shared by the hardware tests' system tier (hardware-tests/build-system.sh) and
# the fresh-machine check (scripts/fresh-check.sh): both keep their roots in one
# cache directory, and debootstrap keeps the .deb files it downloads in one
# package cache there, so the second root costs no second download of the first
# one's packages.
#
#   HARK_DEBIAN_CACHE   the cache directory (default: target/debian-roots)
#   HARK_DEBIAN_MIRROR  the mirror (default: http://deb.debian.org/debian)
#
# usage: scripts/debian-root.sh PACKAGES
set -euo pipefail

packages=${1?usage: debian-root.sh PACKAGES}
repo=$(dirname "$(dirname "$(realpath "$0")")")
cache=${HARK_DEBIAN_CACHE:-$repo/target/debian-roots}
mirror=${HARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache/debs"

# The key names the suite, the variant and the package list: a changed list is a
# new root, never a stale one.
key=$(printf 'bookworm minbase %s' "$packages" | md5sum | cut -c1-12)
tarball="$cache/bookworm-minbase-$key.tar"
if [ ! -f "$tarball" ]; then
    work="$cache/work-$key"
    rm -rf "$work"
    include=()
    [ -z "$packages" ] || include=(--include="$packages")
    echo "debian-root: debootstrap bookworm minbase ${packages:++ $packages} (log: $cache/$key.log)" >&2
    debootstrap --variant=minbase --cache-dir="$cache/debs" "${include[@]}" bookworm "$work" "$mirror" \
        >"$cache/$key.log" 2>&1 || { tail -20 "$cache/$key.log" >&2; exit 1; }
    tar -C "$work" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work"
fi
echo "$tarball"
