#!/usr/bin/env bash
# Installs the Debian packages harkd needs to build, run and be tested, when they
# are missing, and any packages given as arguments (scripts/cross-aarch64.sh adds
# the cross toolchain and QEMU's arm emulators that way). Safe to run again: it
# only calls apt-get when something is absent.
set -euo pipefail

packages=(
  # C toolchain: Rust build scripts and the final link need a C compiler and
  # libc's start files (a fresh Debian has neither; scripts/fresh-check.sh
  # removes the next line to show the build then fails)
  gcc libc6-dev
  # build
  pkg-config libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  libgstrtspserver-1.0-dev libudev-dev libasound2-dev
  # build: WebRTC (libgstwebrtc, for WHEP listening in a browser)
  libgstreamer-plugins-bad1.0-dev
  # run: GStreamer elements harkd uses (alsasrc, opusenc, level, rtp*pay, avenc_aac,
  # lamemp3enc; webrtcbin, dtlssrtpenc, srtpenc and libnice's nicesrc/nicesink for WHEP)
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-alsa gstreamer1.0-libav
  gstreamer1.0-plugins-bad gstreamer1.0-nice
  # tests and benchmark: real RTSP clients, gst-launch, procps (ps), util-linux
  gstreamer1.0-tools ffmpeg procps python3
  # alert tests: the test CA and certificate for the https receiver
  openssl
  # the status page's tests: a real headless browser and its driver (Selenium
  # itself comes from PyPI into target/tools, scripts/browser-venv.sh)
  chromium chromium-driver python3-venv
  # D-Bus tests: a private dbus-daemon, busctl (systemd), dbus-monitor/dbus-send, setpriv
  dbus-daemon dbus-bin systemd util-linux
  # benchmark: the record-mode RTSP server standing in for the peers' MediaMTX
  python3-gi gir1.2-gst-rtsp-server-1.0
  # hardware-in-the-loop tests: QEMU, and what the guest is built from (the
  # kernel comes from Debian's linux-image-amd64 by apt-get download)
  qemu-system-x86 busybox-static cpio udev xz-utils kmod debootstrap e2fsprogs
  # the fresh-machine check (scripts/fresh-check.sh): namespaces, loopback
  iproute2
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo not found; install Rust >= 1.94 (https://rustup.rs) and run again" >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n1.94.0\n' "$have" | sort -V | head -n1)" != "1.94.0" ]; then
  echo "install-deps: Rust $have is too old; harkd needs 1.94 or newer" >&2
  exit 1
fi
