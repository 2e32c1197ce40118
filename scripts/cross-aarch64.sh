#!/usr/bin/env bash
# Runs a command (cargo build, usually) with the environment that cross-builds
# for aarch64-unknown-linux-gnu (a Raspberry Pi 3, 4 or 5 on a 64-bit OS) on a
# Debian 12 x86_64 host: Debian's cross C toolchain links, against the arm64
# tree `scripts/debian-root.sh --arm64` unpacks; pkg-config reads that tree's .pc
# files. Installs what is missing first (install-deps.sh).
#
# usage: scripts/cross-aarch64.sh COMMAND...     (prints the sysroot with --sysroot)
set -euo pipefail
here=$(dirname "$(realpath "$0")")

# Build: headers, libraries and .pc files of what harkd links (plugins-bad:
# libgstwebrtc, for WHEP).
# Guest (make hil-aarch64): the kernel and modules, busybox, udev, kmod, and the
# GStreamer plugins harkd and the guest's player load at run time.
AARCH64_PACKAGES=libc6-dev,libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,libgstreamer-plugins-bad1.0-dev,libgstrtspserver-1.0-dev,libudev-dev,libasound2-dev,libglib2.0-dev,linux-image-arm64,busybox-static,udev,kmod,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,gstreamer1.0-alsa,gstreamer1.0-libav,gstreamer1.0-tools

# The cross C toolchain, mmdebstrap for the tree, QEMU for arm64 (system: the
# hardware tests; user: scripts/check-aarch64.sh).
"$here/install-deps.sh" gcc-aarch64-linux-gnu mmdebstrap qemu-system-arm qemu-user >&2
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    command -v rustup >/dev/null || { echo "cross-aarch64: needs rustup (rustup target add aarch64-unknown-linux-gnu)" >&2; exit 1; }
    rustup target add aarch64-unknown-linux-gnu >&2
fi

sysroot=$("$here/debian-root.sh" --arm64 "$AARCH64_PACKAGES")
if [ "${1:-}" = --sysroot ]; then
    echo "$sysroot"
    exit 0
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CFLAGS_aarch64_unknown_linux_gnu="--sysroot=$sysroot"
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_SYSROOT_DIR=$sysroot
export PKG_CONFIG_LIBDIR=$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig
unset PKG_CONFIG_PATH
exec "$@"
