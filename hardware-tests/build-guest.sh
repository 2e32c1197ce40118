#!/usr/bin/env bash
# Builds the fast-tier guest for the hardware-in-the-loop tests, from package
# registries only:
#   OUT/vmlinux      the kernel of Debian's standard linux-image-amd64 package,
#                    its ELF payload taken out of vmlinuz (boots faster under TCG)
#   OUT/initrd.cpio  busybox, systemd-udevd, the sound/USB/virtio modules, harkd
#                    with the GStreamer plugins it uses, gst-launch-1.0 (to play
#                    into snd-aloop), hark-usbip-mic (attaches emulated USB
#                    mics to vhci-hcd), and /init (hardware-tests/guest/init)
# Downloads are cached in OUT/cache; a second run only rebuilds the initrd.
#
# With ARM64_ROOT (an arm64 Debian tree from `scripts/debian-root.sh --arm64`, holding
# linux-image-arm64, busybox-static, udev, kmod and the GStreamer packages), the
# guest is an aarch64 one for qemu-system-aarch64 -M virt: OUT/Image is that
# kernel (Debian's arm64 vmlinuz is an Image), and every program, library and
# module comes from that tree; HARKD and USBIP_MIC must be aarch64 builds.
#
# usage: hardware-tests/build-guest.sh OUT_DIR HARKD_BINARY USBIP_MIC_BINARY [ARM64_ROOT]
set -euo pipefail

usage="usage: build-guest.sh OUT_DIR HARKD_BINARY USBIP_MIC_BINARY [ARM64_ROOT]"
out=$(realpath -m "${1:?$usage}")
harkd=$(realpath "${2:?$usage}")
usbip_mic=$(realpath "${3:?$usage}")
libroot=${4:+$(realpath "$4")}
here=$(dirname "$(realpath "$0")")
mkdir -p "$out/cache"

# --- kernel and modules ------------------------------------------------------
if [ -n "$libroot" ]; then
    triplet=aarch64-linux-gnu
    for f in "$harkd" "$usbip_mic"; do
        readelf -hW "$f" | grep -q "Machine:.*AArch64" || { echo "build-guest: $f is not an aarch64 program" >&2; exit 1; }
    done
    kdir="$out/cache/arm64"
    mkdir -p "$kdir"
    kver=$(ls "$libroot/lib/modules")
    if [ ! -f "$out/Image.$kver" ]; then
        # Debian's arm64 vmlinuz is the Image itself (older ones: gzipped).
        if [ "$(head -c2 "$libroot/boot/vmlinuz-$kver" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
            gzip -dc "$libroot/boot/vmlinuz-$kver" > "$out/Image.$kver.tmp"
        else
            cp "$libroot/boot/vmlinuz-$kver" "$out/Image.$kver.tmp"
        fi
        mv "$out/Image.$kver.tmp" "$out/Image.$kver"
    fi
    ln -sf "Image.$kver" "$out/Image"
    # A copy to run depmod in: the arm64 tree stays as unpacked.
    rm -rf "$kdir/modroot" && mkdir -p "$kdir/modroot/lib/modules"
    cp -a "$libroot/lib/modules/$kver" "$kdir/modroot/lib/modules/"
    modsrc="$kdir/modroot"
else
    triplet=x86_64-linux-gnu
    kernel_pkg() {
        apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
    }
    pkg=$(kernel_pkg)
    [ -n "$pkg" ] || { apt-get update -q >/dev/null && pkg=$(kernel_pkg); }
    [ -n "$pkg" ] || { echo "build-guest: cannot find the linux-image package (apt-get update?)" >&2; exit 1; }
    kdir="$out/cache/$pkg"
    if [ ! -f "$kdir/done" ]; then
        rm -rf "$kdir" && mkdir -p "$kdir"
        (cd "$out/cache" && apt-get download "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
        deb=$(ls "$out/cache/${pkg}"_*.deb | head -1)
        dpkg-deb -x "$deb" "$kdir/root"
        touch "$kdir/done"
    fi
    kver=$(ls "$kdir/root/lib/modules")
    if [ ! -f "$out/vmlinux.$kver" ]; then
        # The xz stream inside vmlinuz is the uncompressed ELF kernel (QEMU boots it
        # through its PVH note); xz complains about the trailing bytes, not the data.
        vmlinuz="$kdir/root/boot/vmlinuz-$kver"
        off=$(grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
        tail -c +$((off + 1)) "$vmlinuz" | xz -dc 2>/dev/null > "$out/vmlinux.$kver.tmp" || true
        [ "$(head -c4 "$out/vmlinux.$kver.tmp" | tail -c3)" = ELF ] || { echo "build-guest: no ELF kernel in $vmlinuz" >&2; exit 1; }
        mv "$out/vmlinux.$kver.tmp" "$out/vmlinux.$kver"
    fi
    ln -sf "vmlinux.$kver" "$out/vmlinux"
    modsrc="$kdir/root"
fi

root="$out/root"
rm -rf "$root"
# Merged /usr, as on the host: libgstreamer finds its plugins relative to where
# it was loaded from, so /lib must be /usr/lib here too.
mkdir -p "$root"/usr/lib "$root"/usr/lib64
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,var/lib/hark,lib/modules/"$kver"}

modules="snd-aloop snd-usb-audio vhci-hcd virtio_net virtio_pci virtio-rng virtio_console xhci-pci"
# The PC's onboard audio (QEMU's AC'97) exists on x86_64 only.
[ -n "$libroot" ] || modules="$modules snd-intel8x0"
depmod -b "$modsrc" "$kver"
for m in $modules; do
    modprobe -d "$modsrc" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r ko; do
    rel=${ko#"$modsrc"}
    mkdir -p "$root$(dirname "$rel")"
    cp "$ko" "$root$rel"
done
cp "$modsrc/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
depmod -b "$root" "$kver"

# --- programs and their libraries ---------------------------------------------
. "$here/copy-libs.sh"

cp "$libroot/bin/busybox" "$root/bin/busybox"
copy_with_libs /lib/systemd/systemd-udevd /bin/udevadm /usr/bin/gst-launch-1.0
install -D -m755 "$harkd" "$root/usr/bin/harkd"
libs_of "$harkd"
install -D -m755 "$usbip_mic" "$root/usr/bin/hark-usbip-mic"
libs_of "$usbip_mic"

gstlib=/usr/lib/$triplet/gstreamer-1.0
plugins="coreelements audiotestsrc alsa audioconvert audioresample audiofx volume level opus app rtp rtpmanager udp"
for p in $plugins; do
    copy_with_libs "$gstlib/libgst$p.so"
done
copy_with_libs "/usr/lib/$triplet/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner"
mkdir -p "$root/usr/share"
cp -r "$libroot/usr/share/alsa" "$root/usr/share/alsa"

mkdir -p "$root/lib/udev/rules.d"
for r in 50-udev-default 60-persistent-alsa 78-sound-card 80-drivers; do
    cp "$libroot/lib/udev/rules.d/$r.rules" "$root/lib/udev/rules.d/"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
printf 'root:x:0:\naudio:x:29:\nhark:x:999:\n' > "$root/etc/group"

install -m755 "$here/guest/init" "$root/init"
install -m755 "$here/guest/capture-tree.sh" "$root/usr/bin/capture-tree"

(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/initrd.cpio.tmp"
mv "$out/initrd.cpio.tmp" "$out/initrd.cpio"
echo "build-guest: kernel $kver, initrd $(du -h "$out/initrd.cpio" | cut -f1)"
