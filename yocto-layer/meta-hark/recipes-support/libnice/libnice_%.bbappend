# webrtcbin finds ICE through libnice's GStreamer plugin (nicesrc, nicesink),
# which meta-oe builds only with PACKAGECONFIG "gstreamer". No "gupnp": harkd
# never asks a router to open ports.
PACKAGECONFIG:append = " gstreamer"
