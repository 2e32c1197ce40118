#!/usr/bin/env bash
# Builds the system-tier guest: a Debian 12 root file system (debootstrap,
# minbase, with systemd as PID 1, dbus, udev), harkd installed as the README
# says (binary, /etc/hark/hark.toml, the units from configs/systemd, the hark
# user from configs/sysusers.d, the udev rule, the D-Bus policy), a control
# service for the tests, and a small initramfs that mounts it.
#   OUT/disk.raw        ext4 image of the root file system
#   OUT/initrd.cpio     loads virtio_blk and ext4, mounts /dev/vda, switch_root
# The kernel and its modules come from the fast tier's build (FAST_DIR).
# The debootstrap result is cached by scripts/debian-root.sh (target/debian-roots).
#
# With ARM64_ROOT (the arm64 tree harkd is cross-built against, which the aarch64
# fast tier in FAST_DIR was built from), the guest is an aarch64 one: its root is
# an arm64 tree of the same packages, unpacked without running anything of it
# (`debian-root.sh --arm64`: no arm64 emulation on the host), then given what
# those packages' maintainer scripts would have made and systemd needs (the
# users and groups, the hwdb); GStreamer's plugins and libraries come from
# ARM64_ROOT. HARKD and USBIP_MIC must be aarch64 builds.
#
# usage: hardware-tests/build-system.sh OUT_DIR FAST_DIR HARKD_BINARY USBIP_MIC_BINARY [ARM64_ROOT]
set -euo pipefail

usage="usage: build-system.sh OUT_DIR FAST_DIR HARKD_BINARY USBIP_MIC_BINARY [ARM64_ROOT]"
out=$(realpath -m "${1:?$usage}")
fast=$(realpath "${2:?$usage}")
harkd=$(realpath "${3:?$usage}")
usbip_mic=$(realpath "${4:?$usage}")
arm64=${5:+$(realpath "$5")}
here=$(dirname "$(realpath "$0")")
repo=$(dirname "$here")
packages=systemd,systemd-sysv,dbus,udev,kmod,iproute2,procps
root="$out/rootfs"
rm -rf "$root"
mkdir -p "$root"

if [ -n "$arm64" ]; then
    for f in "$harkd" "$usbip_mic"; do
        readelf -hW "$f" | grep -q "Machine:.*AArch64" || { echo "build-system: $f is not an aarch64 program" >&2; exit 1; }
    done
    [ -f "$fast/Image" ] || { echo "build-system: $fast has no aarch64 kernel (build-guest.sh with ARM64_ROOT first)" >&2; exit 1; }
    # The modules as build-guest.sh laid them out, with depmod's files.
    kdir="$fast/cache/arm64/modroot"
    triplet=aarch64-linux-gnu
    # debootstrap's minbase is the Essential packages; an extracted tree has only
    # what it is asked for (and their dependencies).
    essential=base-files,base-passwd,bash,bsdutils,coreutils,dash,debianutils,diffutils,findutils,grep,gzip,hostname,init-system-helpers,libc-bin,login,ncurses-base,sed,sysvinit-utils,tar,util-linux,mount
    base=$("$repo/scripts/debian-root.sh" --arm64 "$essential,$packages")
    cp -a "$base/." "$root/"
    rm -f "$root/.done"
    # What the maintainer scripts would have made: base-files' /var/run and
    # /var/lock links (the system bus's socket is at /var/run/dbus for clients),
    # base-passwd's users and groups, then every sysusers.d entry
    # (systemd-journal, messagebus, ...); the udev hardware database. The host's
    # systemd is the same release (252) as the tree's.
    rm -rf "$root/var/run" "$root/var/lock"
    ln -s /run "$root/var/run"
    ln -s /run/lock "$root/var/lock"
    cp "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
    cp "$root/usr/share/base-passwd/group.master" "$root/etc/group"
    systemd-sysusers --root="$root"
    systemd-hwdb update --root="$root"
    : > "$root/etc/machine-id"
else
    kdir=$(ls -d "$fast"/cache/linux-image-*/root | head -1)
    triplet=x86_64-linux-gnu
    # --- the Debian root file system (cached, shared with scripts/fresh-check.sh) ------
    base=$("$repo/scripts/debian-root.sh" "$packages")
    tar -C "$root" -xf "$base"
fi
kver=$(ls "$kdir/lib/modules")

# --- kernel modules --------------------------------------------------------------
# (/lib/modules: /usr/lib/modules on the merged-/usr x86_64 root.)
mkdir -p "$root/lib/modules"
cp -a "$kdir/lib/modules/$kver" "$root/lib/modules/"
depmod -b "$root" "$kver"

# --- harkd and what it needs at run time ------------------------------------------
libroot=$arm64
. "$here/copy-libs.sh"
install -D -m755 "$harkd" "$root/usr/bin/harkd"
libs_of "$harkd"
gstlib=/usr/lib/$triplet/gstreamer-1.0
for p in coreelements audiotestsrc alsa audioconvert audioresample audiofx volume level opus app rtp rtpmanager udp; do
    copy_with_libs "$gstlib/libgst$p.so"
done
copy_with_libs "/usr/lib/$triplet/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner"
[ -d "$root/usr/share/alsa" ] || cp -r "$arm64/usr/share/alsa" "$root/usr/share/alsa"

# As the README installs it.
install -D -m644 "$repo/configs/hark.toml" "$root/etc/hark/hark.toml"
install -D -m644 -t "$root/etc/systemd/system/" \
    "$repo/configs/systemd/harkd.service" "$repo/configs/systemd/harkd-deadman.service"
install -D -m644 "$repo/configs/sysusers.d/hark.conf" "$root/etc/sysusers.d/hark.conf"
systemd-sysusers --root="$root" "$root/etc/sysusers.d/hark.conf"
install -D -m644 "$repo/configs/udev/70-hark.rules" "$root/etc/udev/rules.d/70-hark.rules"
install -D -m644 "$repo/configs/modules-load.d/hark.conf" "$root/etc/modules-load.d/hark.conf"
install -D -m644 "$repo/configs/dbus/org.hark.Agent1.conf" "$root/etc/dbus-1/system.d/org.hark.Agent1.conf"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/harkd.service "$root/etc/systemd/system/multi-user.target.wants/harkd.service"

# --- the test harness's parts ---------------------------------------------------------
echo hark-hil > "$root/etc/hostname"
install -D -m644 /dev/stdin "$root/etc/systemd/network/20-wired.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
EOF
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
install -D -m755 "$here/guest/hil-control" "$root/usr/local/sbin/hil-control"
install -D -m644 /dev/stdin "$root/etc/systemd/system/hil-control.service" <<'EOF'
[Unit]
Description=hardware-test control channel (virtio port "hil")
DefaultDependencies=no
After=systemd-udevd.service
Wants=systemd-udevd.service

[Service]
ExecStart=/usr/local/sbin/hil-control
Restart=always

[Install]
WantedBy=sysinit.target
EOF
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
ln -sf /etc/systemd/system/hil-control.service "$root/etc/systemd/system/sysinit.target.wants/hil-control.service"
install -D -m755 "$usbip_mic" "$root/usr/local/bin/hark-usbip-mic"
install -D -m644 /dev/stdin "$root/etc/systemd/system/hil-usbip.service" <<'EOF'
[Unit]
Description=hardware-test USB/IP attach (emulated microphones from the host)
After=network.target

[Service]
ExecStartPre=/sbin/modprobe vhci-hcd
ExecStart=/usr/local/bin/hark-usbip-mic listen --port 3240 --ports 4

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/hil-usbip.service "$root/etc/systemd/system/multi-user.target.wants/hil-usbip.service"
# No password prompts, no getty on the console (the tests drive the guest).
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyAMA0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"

rm -f "$out/disk.raw"
mkfs.ext4 -q -F -L hark -d "$root" "$out/disk.raw" 1200M

# --- the initramfs that mounts it -----------------------------------------------------
ird="$out/initrd-root"
rm -rf "$ird"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$arm64/bin/busybox" "$ird/bin/busybox"
for m in virtio_blk virtio_pci ext4; do
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' > "$ird/order"
while read -r ko; do cp "$ko" "$ird/lib/modules/"; done < "$ird/order"
sed -i 's|.*/||' "$ird/order"
cat > "$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done < /order
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; sleep 5; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet) > "$out/initrd.cpio"
if [ -n "$arm64" ]; then
    ln -sf "$fast/Image" "$out/Image"
    rm -f "$out/vmlinux"
else
    ln -sf "$fast/vmlinux" "$out/vmlinux"
fi
echo "build-system: disk $(du -h --apparent-size "$out/disk.raw" | cut -f1), rootfs $(du -sh "$root" | cut -f1)"
