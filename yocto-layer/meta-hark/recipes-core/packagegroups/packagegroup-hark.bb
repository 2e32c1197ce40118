SUMMARY = "hark microphone appliance"
DESCRIPTION = "What a hark appliance runs on top of a booting system: the \
               harkd agent with its configuration, units and policies, and \
               the systemd settings for the hardware watchdog and a capped \
               journal."
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "hark-system-conf \
                  harkd \
"
# USB microphones need snd-usb-audio. A recommendation: a kernel that has it
# built in has no such package.
RRECOMMENDS:${PN} = "kernel-module-snd-usb-audio"
