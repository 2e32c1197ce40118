#!/usr/bin/env bash
# Prints the path of a Debian 12 arm64 tree holding PACKAGES (comma-separated)
# and everything they depend on, unpacked but not installed (mmdebstrap
# --variant=extract: nothing is run, so no arm64 emulation is needed), building
# it first when it is not cached.
#
# It is the sysroot harkd is cross-built against (`make build-aarch64`: the arm64
# -dev packages' headers, libraries and .pc files) and the place the aarch64
# hardware-test guest takes its kernel, busybox, udev and GStreamer from. A tree
# apart, not Debian's multiarch packages installed on the host: those must have
# the same version on both architectures, and libgstrtspserver-1.0-dev (not
# Multi-Arch: same) or a mirror one update behind on arm64 would make apt-get
# remove the host's own -dev packages.
#
#   HARK_DEBIAN_CACHE   the cache directory (default: target/debian-roots)
#   HARK_DEBIAN_MIRROR  the mirror (default: http://deb.debian.org/debian)
#
# usage: scripts/aarch64-root.sh PACKAGES
set -euo pipefail

packages=${1:?usage: aarch64-root.sh PACKAGES}
repo=$(dirname "$(dirname "$(realpath "$0")")")
cache=${HARK_DEBIAN_CACHE:-$repo/target/debian-roots}
mirror=${HARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"

key=$(printf 'bookworm arm64 extract %s' "$packages" | md5sum | cut -c1-12)
root="$cache/bookworm-arm64-$key"
if [ ! -f "$root/.done" ]; then
    rm -rf "$root"
    echo "debian-root: mmdebstrap bookworm arm64 extract + $packages (log: $cache/arm64-$key.log)" >&2
    mmdebstrap --variant=extract --architectures=arm64 --include="$packages" \
        bookworm "$root" "$mirror" >"$cache/arm64-$key.log" 2>&1 ||
        { tail -20 "$cache/arm64-$key.log" >&2; exit 1; }
    # The linker follows symbolic links as the host sees them: a link to an
    # absolute path (/lib/aarch64-linux-gnu/libfoo.so.1) would name the host's
    # file, which does not exist or is the wrong architecture. Make them relative.
    find "$root" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
    done
    touch "$root/.done"
fi
# Links update-alternatives would make (nothing is configured in an extracted
# tree): libavcodec, for harkd's AAC encoder, needs libblas.so.3 and liblapack.so.3.
for alt in blas/libblas.so.3 lapack/liblapack.so.3; do
    dir=$root/usr/lib/aarch64-linux-gnu
    if [ -e "$dir/$alt" ] && [ ! -e "$dir/$(basename "$alt")" ]; then
        ln -sfn "$alt" "$dir/$(basename "$alt")"
    fi
done
echo "$root"
