#!/usr/bin/python3
"""A minimal relaying RTSP server (gst-rtsp-server via PyGObject), standing in for
MediaMTX in the benchmark's "peer approach": ffmpeg pushes each stream to
rtsp://HOST:PORT/in/sN with ANNOUNCE/RECORD, and readers pull it from
rtsp://HOST:PORT/sN, as MediaMTX relays a published path to its readers.

MediaMTX forwards the pushed RTP packets without touching them; gst-rtsp-server
must have a payloader per served stream, so here each pushed stream is
depayloaded and payloaded again (Opus packets are not re-encoded) on its way
through a loopback UDP port. Its CPU is that of this relay, not of MediaMTX:
the benchmark reports it apart from the pushers' and the readers'.

usage: record_server.py PORT NSTREAMS
"""
import socket
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

RTP_CAPS = "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96"


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Gst.init(None)
port, n = sys.argv[1], int(sys.argv[2])
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
mounts = server.get_mount_points()
for i in range(n):
    hop = free_udp_port()
    push = GstRtspServer.RTSPMediaFactory()
    push.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    push.set_launch(f"( rtpopusdepay name=depay0 ! rtpopuspay pt=96 ! "
                    f"udpsink host=127.0.0.1 port={hop} sync=false async=false )")
    mounts.add_factory(f"/in/s{i}", push)
    pull = GstRtspServer.RTSPMediaFactory()
    pull.set_shared(True)
    pull.set_launch(f'( udpsrc address=127.0.0.1 port={hop} caps="{RTP_CAPS}" ! '
                    f"rtpopusdepay ! rtpopuspay name=pay0 pt=96 )")
    mounts.add_factory(f"/s{i}", pull)
if server.attach(None) == 0:
    sys.exit("cannot bind")
print("ready", flush=True)
GLib.MainLoop().run()
