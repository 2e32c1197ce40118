SUMMARY = "hark microphone appliance image"
DESCRIPTION = "A small image that boots with systemd and runs harkd: every \
               USB microphone becomes an RTSP stream at \
               rtsp://<host>:8554/<name>. No SSH server and no user besides \
               root (locked) and hark, unless IMAGE_FEATURES ask for them \
               (e.g. ssh-server-dropbear, allow-empty-password)."
LICENSE = "MIT"

inherit core-image features_check

REQUIRED_DISTRO_FEATURES = "systemd"

IMAGE_INSTALL = "packagegroup-core-boot \
                 packagegroup-hark \
                 ${CORE_IMAGE_EXTRA_INSTALL} \
"

IMAGE_LINGUAS = ""
