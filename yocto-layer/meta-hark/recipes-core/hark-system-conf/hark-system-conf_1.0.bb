SUMMARY = "systemd settings of the hark appliance"
DESCRIPTION = "systemd drop-ins for a hark appliance: PID 1 drives the \
               hardware watchdog (RuntimeWatchdogSec), and the journal is \
               capped in size."
HOMEPAGE = "https://github.com/hark-audio/hark"
BUGTRACKER = "https://github.com/hark-audio/hark/issues"
SECTION = "base"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://50-hark-watchdog.conf;beginline=1;endline=1;md5=b2dccaa94b3629a08bfb4f983cad6f89"

SRC_URI = "file://50-hark-journal.conf \
           file://50-hark-watchdog.conf \
"

S = "${UNPACKDIR}"

inherit features_check

REQUIRED_DISTRO_FEATURES = "systemd"

do_install() {
    install -D -m 0644 ${S}/50-hark-watchdog.conf ${D}${systemd_unitdir}/system.conf.d/50-hark-watchdog.conf
    install -D -m 0644 ${S}/50-hark-journal.conf ${D}${systemd_unitdir}/journald.conf.d/50-hark-journal.conf
}

FILES:${PN} += "${systemd_unitdir}/journald.conf.d/50-hark-journal.conf \
                ${systemd_unitdir}/system.conf.d/50-hark-watchdog.conf \
"
