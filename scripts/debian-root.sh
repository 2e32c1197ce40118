#!/usr/bin/env bash
# The Debian 12 trees the checks build from package registries, cached under one
# directory (target/debian-roots; debootstrap keeps its .deb files in one package
# cache there, so a second root costs no second download of the first one's
# packages). Prints the path of:
#
# - (default) a tarball of a root file system made with `debootstrap
#   --variant=minbase` plus PACKAGES (comma-separated, or empty for minbase
#   alone). Shared by the hardware tests' system tier
#   (hardware-tests/build-system.sh) and the fresh-machine check
#   (scripts/fresh-check.sh).
# - (--arm64) a directory holding an arm64 tree of PACKAGES and everything they
#   depend on, unpacked but not installed (`mmdebstrap --variant=extract`:
#   nothing is run, so no arm64 emulation is needed). It is the sysroot harkd is
#   cross-built against (scripts/cross-aarch64.sh) and where the aarch64 guest
#   of the hardware tests takes its kernel, busybox, udev and GStreamer from. A
#   tree apart, not Debian's multiarch `:arm64` packages on the host: those must
#   match the host's versions exactly, and libgstrtspserver-1.0-dev (not
#   Multi-Arch: same) or an arm64 mirror one update behind make apt-get remove
#   the host's own -dev packages.
#
#   HARK_DEBIAN_CACHE   the cache directory (default: target/debian-roots)
#   HARK_DEBIAN_MIRROR  the mirror (default: http://deb.debian.org/debian)
#
# usage: scripts/debian-root.sh [--arm64] PACKAGES
set -euo pipefail

arm64=
if [ "${1:-}" = --arm64 ]; then
    arm64=1
    shift
fi
packages=${1?usage: debian-root.sh [--arm64] PACKAGES}
repo=$(dirname "$(dirname "$(realpath "$0")")")
cache=${HARK_DEBIAN_CACHE:-$repo/target/debian-roots}
mirror=${HARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache/debs"

if [ -n "$arm64" ]; then
    [ -n "$packages" ] || { echo "debian-root: --arm64 needs PACKAGES" >&2; exit 2; }
    key=$(printf 'bookworm arm64 extract %s' "$packages" | md5sum | cut -c1-12)
    root="$cache/bookworm-arm64-$key"
    if [ ! -f "$root/.done" ]; then
        rm -rf "$root"
        echo "debian-root: mmdebstrap bookworm arm64 extract + $packages (log: $cache/arm64-$key.log)" >&2
        mmdebstrap --variant=extract --architectures=arm64 --include="$packages" \
            bookworm "$root" "$mirror" >"$cache/arm64-$key.log" 2>&1 ||
            { tail -20 "$cache/arm64-$key.log" >&2; exit 1; }
        # The linker follows symbolic links as the host sees them: a link to an
        # absolute path (/lib/aarch64-linux-gnu/libfoo.so.1) would name the
        # host's file, absent or of the wrong architecture. Make them relative.
        find "$root" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
            target=$(readlink "$link")
            ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
        done
        touch "$root/.done"
    fi
    # Links update-alternatives would make (nothing is configured in an extracted
    # tree): libavcodec, for harkd's AAC encoder, needs libblas.so.3 and liblapack.so.3.
    dir=$root/usr/lib/aarch64-linux-gnu
    for alt in blas/libblas.so.3 lapack/liblapack.so.3; do
        if [ -e "$dir/$alt" ] && [ ! -e "$dir/$(basename "$alt")" ]; then
            ln -sfn "$alt" "$dir/$(basename "$alt")"
        fi
    done
    echo "$root"
    exit 0
fi

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
