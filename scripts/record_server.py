#!/usr/bin/python3
"""A minimal RTSP server in record mode (gst-rtsp-server via PyGObject), standing in
for MediaMTX in the benchmark's "peer approach": ffmpeg pushes each stream to it with
ANNOUNCE/RECORD. It only receives and depayloads; it forwards to no client, so its
CPU is a lower bound for a relaying server.

usage: record_server.py PORT NSTREAMS
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, n = sys.argv[1], int(sys.argv[2])
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
mounts = server.get_mount_points()
for i in range(n):
    f = GstRtspServer.RTSPMediaFactory()
    f.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    f.set_launch("( rtpopusdepay name=depay0 ! fakesink sync=false )")
    mounts.add_factory(f"/s{i}", f)
if server.attach(None) == 0:
    sys.exit("cannot bind")
print("ready", flush=True)
GLib.MainLoop().run()
