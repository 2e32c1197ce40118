"""harkd in the guest: started by hand (fast tier) or as the installed
service (system tier); its status, streams, level meter, unit and D-Bus
objects, and waits on them."""

import json

from .common import HTTP_PASSWORD, HTTP_USER, wait_until


GUEST_CONFIG = f"""
# Opus in 20 ms frames, not the default 60: the hotplug-latency scenario's 1 s
# target is about plug-to-PLAY on a board, and the aarch64 guest under TCG on a
# slow 2-core host came within 30 ms of it with 60 ms frames (p95 970 ms; a
# stream's first frame is 40 ms longer, and slower still under emulation).
[defaults]
frame_ms = 20

[rtsp]
bind = "0.0.0.0"
port = 8554

[http]
listen = "0.0.0.0:8780"
allow_non_loopback = true

[http.auth]
user = "{HTTP_USER}"
password = "{HTTP_PASSWORD}"

[devices]
enabled = true
allow_non_usb = true
state_dir = "/var/lib/hark"
# Under TCG the guest CPU is slow and bursty: a deeper capture buffer.
alsa_buffer_ms = 2000
"""


def start_harkd(g, config=GUEST_CONFIG):
    g.write("/etc/hark/hark.toml", config)
    g.sh("HARK_LOG=info,hark_agent=debug harkd run --config /etc/hark/hark.toml --bus none "
         "--log-format json > /tmp/harkd.log 2>&1 &")
    wait_until("harkd ready", 30,
               lambda: "harkd ready" in g.sh("cat /tmp/harkd.log")[1])


def harkd_alive(g):
    return g.sh("pidof harkd", check=False)[0] == 0


def harkd_memory(g, pid=None):
    """harkd's resident and peak resident memory in the guest, in KiB."""
    pid = pid or g.sh("pidof harkd")[1].split()[0]
    status = g.sh(f"cat /proc/{pid}/status")[1]
    fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def device_streams(g):
    st = g.http_json("/api/v1/status")
    return {s["name"]: s for s in st["streams"] if s.get("card") is not None}


def wait_loud(g, name, timeout=20):
    """Waits until harkd's level meter shows the tone on `name` (a loopback
    stream runs, silent, before the player has started)."""
    wait_until(f"/{name} carrying the tone", timeout, lambda: any(
        s["name"] == name and s["state"] == "running" and (s.get("rms_dbfs") or -200) > -30
        for s in g.http_json("/api/v1/status")["streams"]))


def wait_stream(g, what, timeout, pred=lambda name, st: True):
    def find():
        for name, st in device_streams(g).items():
            if pred(name, st):
                return name, st
        return None
    return wait_until(what, timeout, find)


# --- harkd under systemd (the system tier) -----------------------------------------


def unit_props(g, *props):
    out = g.sh("systemctl show harkd " + " ".join(f"-p {p}" for p in props))[1]
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_active(g, timeout=90):
    wait_until("harkd active", timeout,
               lambda: g.sh("systemctl is-active harkd", check=False)[1].strip() == "active")


def bus_streams(g):
    """Device objects on the real system bus: {name: {property: value}}."""
    out = g.sh("busctl --json=short call org.hark.Agent1 /org/hark/Agent1 "
               "org.freedesktop.DBus.ObjectManager GetManagedObjects")[1]
    objs = json.loads(out)["data"][0]
    streams = {}
    for ifaces in objs.values():
        dev = ifaces.get("org.hark.Device1")
        if dev:
            props = {k: v["data"] for k, v in dev.items()}
            streams[props["Name"]] = props
    return streams


def agent_prop(g, prop, as_nobody=False):
    prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups " if as_nobody else ""
    return g.sh(f"{prefix}busctl get-property org.hark.Agent1 /org/hark/Agent1 "
                f"org.hark.Agent1 {prop}", check=False)
