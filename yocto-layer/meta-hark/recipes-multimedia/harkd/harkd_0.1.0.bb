SUMMARY = "hark microphone agent: USB microphones as stable RTSP streams"
DESCRIPTION = "harkd streams every USB microphone of a board as an RTSP stream \
               under a name that never changes, watches each stream for stalls \
               and silence, restarts what fails, and reports on D-Bus, HTTP and \
               to the systemd watchdog."
HOMEPAGE = "https://github.com/hark-audio/hark"
BUGTRACKER = "https://github.com/hark-audio/hark/issues"
SECTION = "multimedia"
# The project is dual-licensed. Its license is declared in the workspace's
# Cargo.toml (line 10); the tree has no license text file to checksum yet.
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=10;endline=10;md5=86b31c7756a1a7962f28b62856ed4f05"

# C libraries the crates link: glib/gobject/gio-sys, gstreamer{,-base,-net}-sys,
# gstreamer-{app,rtsp,sdp}-sys (plugins-base), gstreamer-webrtc-sys
# (plugins-bad's libgstwebrtc), gstreamer-rtsp-server-sys, alsa-sys and
# libudev-sys (udev: provided by systemd).
DEPENDS += "alsa-lib \
            glib-2.0 \
            gstreamer1.0 \
            gstreamer1.0-plugins-bad \
            gstreamer1.0-plugins-base \
            gstreamer1.0-rtsp-server \
            udev \
"

# The released tree. A local checkout is built with EXTERNALSRC instead (see
# the layer's documentation). harkd-crates.inc must match Cargo.lock at SRCREV.
SRC_URI = "git://github.com/hark-audio/hark.git;protocol=https;branch=main"
SRCREV = "13e64990316f4f24d6a31e79fb59cc8a84794ab9"

inherit cargo cargo-update-recipe-crates features_check pkgconfig systemd useradd

require ${BPN}-crates.inc

REQUIRED_DISTRO_FEATURES = "systemd"

# Build the agent only, not the other workspace member (a test microphone).
CARGO_SRC_DIR = "agent"
# The workspace's lock file is at the top of the tree, not next to agent/Cargo.toml.
CARGO_LOCK_PATH = "${S}/Cargo.lock"

# Optional codecs (codec = "aac" or "mp3" in hark.toml); opus and l16 always work.
# aac needs gstreamer1.0-libav, which has LICENSE_FLAGS = "commercial"; so does
# mp3 for listening in a browser (its Opus branch decodes with avdec_mp3).
PACKAGECONFIG ??= ""
PACKAGECONFIG[aac] = ",,,gstreamer1.0-libav gstreamer1.0-plugins-good-audioparsers"
PACKAGECONFIG[mp3] = ",,,gstreamer1.0-libav gstreamer1.0-plugins-good-audioparsers gstreamer1.0-plugins-good-lame"

# Exactly what configs/ ships for a system install (dev.toml is for `make run`).
do_install:append() {
    install -d -m 0755 ${D}${sysconfdir}/hark
    install -m 0644 ${S}/configs/hark.toml ${D}${sysconfdir}/hark/hark.toml

    install -d -m 0755 ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/configs/systemd/harkd.service ${D}${systemd_system_unitdir}/harkd.service
    install -m 0644 ${S}/configs/systemd/harkd-deadman.service ${D}${systemd_system_unitdir}/harkd-deadman.service

    install -d -m 0755 ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/configs/dbus/org.hark.Agent1.conf ${D}${datadir}/dbus-1/system.d/org.hark.Agent1.conf

    install -d -m 0755 ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${S}/configs/udev/70-hark.rules ${D}${nonarch_base_libdir}/udev/rules.d/70-hark.rules

    install -d -m 0755 ${D}${nonarch_libdir}/modules-load.d
    install -m 0644 ${S}/configs/modules-load.d/hark.conf ${D}${nonarch_libdir}/modules-load.d/hark.conf

    install -d -m 0755 ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/configs/sysusers.d/hark.conf ${D}${nonarch_libdir}/sysusers.d/hark.conf
}

# The user harkd runs as, created in the root file system at build time exactly
# as configs/sysusers.d/hark.conf (also installed) describes it: oe-core's
# systemd_sysusers_check compares the two when the image is made.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system hark"
USERADD_PARAM:${PN} = "--system --gid hark --groups audio --home-dir ${localstatedir}/lib/hark --no-create-home --shell ${base_sbindir}/nologin --comment 'hark microphone agent' hark"

# harkd.service is enabled. harkd-deadman.service has no [Install] section and is
# not listed here: nothing enables it, only harkd.service's OnFailure= starts it.
SYSTEMD_SERVICE:${PN} = "harkd.service"

FILES:${PN} += "${datadir}/dbus-1/system.d/org.hark.Agent1.conf \
                ${nonarch_base_libdir}/udev/rules.d/70-hark.rules \
                ${nonarch_libdir}/modules-load.d/hark.conf \
                ${nonarch_libdir}/sysusers.d/hark.conf \
                ${systemd_system_unitdir}/harkd-deadman.service \
"

CONFFILES:${PN} = "${sysconfdir}/hark/hark.toml"

# One package per GStreamer plugin whose elements harkd creates: by name at run
# time, so shlibs cannot find them. yocto-layer/scripts/check-gst-elements.py
# derives the list from the agent's source. The libraries harkd links
# (libgstreamer, libgstapp, libgstrtsp, libgstrtspserver, ...) come by shlibs.
# base-utils: /bin/kill (ExecReload=), /bin/chgrp and /bin/chmod (the udev rule).
# WHEP listening: webrtcbin (plugins-bad's webrtc, with dtls and srtp) and
# libnice's nicesrc/nicesink; the hark distro builds those (oe-core's
# plugins-bad lacks webrtc and srtp by default, meta-oe's libnice its plugin).
RDEPENDS:${PN} += "${VIRTUAL-RUNTIME_base-utils} \
                   gstreamer1.0 \
                   gstreamer1.0-plugins-bad-dtls \
                   gstreamer1.0-plugins-bad-srtp \
                   gstreamer1.0-plugins-bad-webrtc \
                   gstreamer1.0-plugins-base-alsa \
                   gstreamer1.0-plugins-base-app \
                   gstreamer1.0-plugins-base-audioconvert \
                   gstreamer1.0-plugins-base-audioresample \
                   gstreamer1.0-plugins-base-audiotestsrc \
                   gstreamer1.0-plugins-base-ogg \
                   gstreamer1.0-plugins-base-opus \
                   gstreamer1.0-plugins-base-volume \
                   gstreamer1.0-plugins-good-audiofx \
                   gstreamer1.0-plugins-good-flac \
                   gstreamer1.0-plugins-good-level \
                   gstreamer1.0-plugins-good-rtp \
                   gstreamer1.0-plugins-good-rtpmanager \
                   gstreamer1.0-plugins-good-udp \
                   libnice \
"
