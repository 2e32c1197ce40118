#!/bin/sh
# Copies what harkd reads of every sound card into OUT, in the same layout
# (a fixture tree for `harkd probe --sysfs-root OUT/sys --procfs-root OUT/proc`):
# the card's sysfs directory (id, number) under its real /sys/devices path, the
# USB device's attributes above it, the /sys/class/sound/cardN link (relative),
# and /proc/asound/cardN (id, usbid, stream files, capture PCM directories). Run-dependent values
# (device numbers, PCM status) are left out so captures compare exactly.
out=$1
mkdir -p "$out/sys/class/sound" "$out/proc/asound"
cp /proc/asound/cards "$out/proc/asound/cards"
for link in /sys/class/sound/card*; do
    n=${link##*/card}
    case "$n" in *[!0-9]*) continue ;; esac
    real=$(readlink -f "$link")
    mkdir -p "$out$real"
    for f in id number; do cp "$real/$f" "$out$real/$f" 2>/dev/null; done
    usb=${real%/*/*/*}
    for f in idVendor idProduct serial manufacturer product devpath speed bDeviceClass; do
        [ -f "$usb/$f" ] && cp "$usb/$f" "$out$usb/$f"
    done
    # /sys/class/sound/cardN -> ../../devices/...
    ln -s "../..${real#/sys}" "$out/sys/class/sound/card$n"
    p=/proc/asound/card$n
    mkdir -p "$out$p"
    for f in id usbid stream0 stream1; do [ -f "$p/$f" ] && cp "$p/$f" "$out$p/$f"; done
    # (git keeps no empty directories: each PCM directory keeps its info file,
    # without the one line that changes while a stream runs)
    for d in "$p"/pcm*c; do
        [ -d "$d" ] || continue
        mkdir -p "$out$d"
        grep -v '^subdevices_avail' "$d/info" > "$out$d/info"
    done
done
