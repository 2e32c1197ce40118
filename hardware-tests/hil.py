#!/usr/bin/python3
"""Hardware-in-the-loop scenarios: real Linux kernels in QEMU, real udev, real
ALSA drivers, harkd inside, real RTSP clients on the host.

usage: hardware-tests/hil.py FAST_DIR [--system SYSTEM_DIR] [SCENARIO ...]

FAST_DIR holds vmlinux and initrd.cpio (hardware-tests/build-guest.sh);
SYSTEM_DIR holds disk.raw, initrd.cpio and vmlinux (hardware-tests/build-system.sh).
Every scenario boots its own guest and is bounded in time; a hung guest is
killed and reported as a failure with its serial console attached. Exit status
0 only when every scenario ran and passed: nothing is skipped.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


class HilError(Exception):
    pass


class FixturesUpdated(Exception):
    """HIL_UPDATE_FIXTURES=1 rewrote fixtures: nothing was compared, so the
    scenario is reported as an update, never as a pass."""


class ScenarioTimeout(BaseException):
    """A scenario's time bound expired. Not an Exception: the `except
    Exception` of a retry loop (wait_until, a plug loop) must not swallow it
    and let the scenario overrun its bound and still pass."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kvm_works(artifacts):
    """KVM is used only when it really runs our kernel: here /dev/kvm exists but
    is a nested module on which a stock kernel aborts or crawls. The probe boots
    the kernel with no root file system and waits for its panic (about 1 s on a
    working KVM)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        r = subprocess.run(
            ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-display", "none",
             "-nodefaults", "-no-reboot", "-m", "256", "-serial", "stdio",
             "-kernel", os.path.join(artifacts, "vmlinux"),
             "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        return b"Kernel panic" in r.stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


ACCEL = None


def accel(artifacts):
    global ACCEL
    if ACCEL is None:
        ACCEL = ["-accel", "kvm", "-cpu", "host"] if kvm_works(artifacts) else ["-accel", "tcg"]
        print(f"hil: accelerator {ACCEL[1]}", flush=True)
    return ACCEL


# Guests started by the scenario that runs now (closed, and shown on failure).
LIVE = []


class Guest:
    """One QEMU guest of the fast tier, with a command channel and forwarded
    RTSP and HTTP ports."""

    def __init__(self, artifacts, name, boot_timeout=90, disk=None, workdir=None, extra=()):
        """`disk`: the system tier's root file system image (the guest then
        boots systemd from it; the same image can be booted again)."""
        self.name = name
        self.proc = self.ctl = self.qemu_log = None
        self.dir = workdir or tempfile.mkdtemp(prefix=f"hil-{name}-")
        # Listed at once: a scenario bound that expires from here on still
        # finds the guest to show, stop and clean up.
        LIVE.append(self)
        self.console = os.path.join(self.dir, f"console-{time.monotonic_ns()}.log")
        self.rtsp_port = free_port()
        self.http_port = free_port()
        # Four "hub sockets": host port usbip_ports[k] -> vhci-hcd port k.
        self.usbip_ports = [free_port() for _ in range(4)]
        ctl = os.path.join(self.dir, "ctl.sock")
        self.monitor_path = os.path.join(self.dir, "mon.sock")
        args = ["qemu-system-x86_64", *accel(artifacts), "-m", "1024", "-smp", "2", "-nodefaults",
                "-display", "none", "-no-reboot",
                "-kernel", os.path.join(artifacts, "vmlinux"),
                "-initrd", os.path.join(artifacts, "initrd.cpio"),
                "-append", ("console=ttyS0 panic=-1 loglevel=4 root=/dev/vda rw "
                            "systemd.show_status=0" if disk else
                            "console=ttyS0 panic=-1 loglevel=4 rdinit=/init"),
                "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.rtsp_port}-:8554,"
                           f"hostfwd=tcp:127.0.0.1:{self.http_port}-:8780,"
                           + ",".join(f"hostfwd=tcp:127.0.0.1:{p}-:{3240 + k}"
                                      for k, p in enumerate(self.usbip_ports)),
                "-device", "virtio-net-pci,netdev=n0",
                "-device", "virtio-rng-pci",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=ctl,path={ctl},server=on,wait=off",
                "-device", "virtserialport,chardev=ctl,name=hil",
                "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
                "-device", "qemu-xhci,id=xhci", "-audiodev", "none,id=snd0"]
        if disk:
            args += ["-drive", f"file={disk},if=virtio,format=raw"]
        args += list(extra)
        self.started = time.monotonic()
        self.qemu_log = open(os.path.join(self.dir, "qemu.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self.qemu_log, stderr=subprocess.STDOUT)
        # Connect before the guest reads the port (a read with nobody connected
        # sees end-of-file).
        self.ctl = socket.socket(socket.AF_UNIX)
        wait_until("the control socket", 10, lambda: self.ctl.connect(ctl) or True)
        self.buf = b""
        self.wait_console("HIL: ready", boot_timeout)
        self.boot_s = time.monotonic() - self.started

    def wait_exit(self, timeout):
        """Waits for QEMU to exit (a guest reboot, with -no-reboot); True if it did."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def console_text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_console(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.console_text():
            if self.proc.poll() is not None:
                raise HilError(f"QEMU exited ({self.proc.returncode}) before {text!r}")
            if time.monotonic() > deadline:
                raise HilError(f"no {text!r} on the console within {timeout} s")
            time.sleep(0.05)

    def sh(self, cmd, timeout=30, check=True):
        """Runs one shell command line in the guest; returns (rc, output)."""
        if "\n" in cmd:
            raise ValueError("one line per command")
        self.ctl.sendall(cmd.encode() + b"\n")
        deadline = time.monotonic() + timeout
        self.ctl.settimeout(0.2)
        while b"@@HIL rc=" not in self.buf or not self.buf.split(b"@@HIL rc=", 1)[1].count(b"\n"):
            if time.monotonic() > deadline:
                raise HilError(f"guest command timed out after {timeout} s: {cmd}")
            if self.proc.poll() is not None:
                raise HilError(f"QEMU exited during: {cmd}")
            try:
                chunk = self.ctl.recv(65536)
                if not chunk:
                    raise HilError("control channel closed")
                self.buf += chunk
            except socket.timeout:
                pass
        out, rest = self.buf.split(b"@@HIL rc=", 1)
        rc_line, self.buf = rest.split(b"\n", 1)
        rc = int(rc_line)
        text = out.decode("utf-8", "replace")
        if check and rc != 0:
            raise HilError(f"guest command failed ({rc}): {cmd}\n{text}")
        return rc, text

    def write(self, path, text):
        b64 = base64.b64encode(text.encode()).decode()
        self.sh(f"mkdir -p $(dirname {path}) && echo {b64} | base64 -d > {path}")

    def monitor(self, command):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.monitor_path)
            s.settimeout(5)
            s.sendall(command.encode() + b"\n")
            time.sleep(0.3)
            try:
                return s.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                return ""

    def http_json(self, path, timeout=5):
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())

    def close(self):
        if self.ctl is not None:
            self.ctl.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
        if self.qemu_log is not None:
            self.qemu_log.close()


USBIP_MIC = os.environ.get("HIL_USBIP_MIC", os.path.join(HERE, "..", "target", "release",
                                                         "hark-usbip-mic"))


class UsbMic:
    """An emulated USB microphone: created = plugged into the guest, stop() =
    unplugged."""

    def __init__(self, guest, serial="HARK0001", vendor="1209", product="4d10",
                 name="HIL Mic", manufacturer="hark", channels=1, rates="48000", tone=1000,
                 port=0):
        args = [USBIP_MIC, "plug", "--connect", f"127.0.0.1:{guest.usbip_ports[port]}",
                "--vendor", vendor, "--product", product, "--name", name,
                "--manufacturer", manufacturer, "--channels", str(channels),
                "--rates", rates, "--tone", str(tone)]
        args += ["--no-serial"] if serial is None else ["--serial", serial]
        self.log = open(os.path.join(guest.dir, f"mic-{serial}-{time.monotonic_ns()}.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline()
        if line.strip() != b"plugged":
            raise HilError(f"the emulated mic did not plug in: {line!r}")
        self.plugged_at = time.monotonic()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()


def wait_until(what, timeout, fn, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # the endpoint may not be up yet
            last = e
        time.sleep(interval)
    raise HilError(f"timed out after {timeout} s waiting for {what} (last error: {last})")


# --- audio analysis ---------------------------------------------------------------

# The one tone analysis every tier shares (tools/audiocheck, built by `make
# build` with the rest of the workspace): duration, level, frequency, continuity.
AUDIOCHECK = os.environ.get(
    "HARK_AUDIOCHECK", os.path.join(HERE, "..", "target", "release", "hark-audiocheck"))

# Expected RMS levels of the tones the scenarios send (a sine's RMS is 3 dB under
# its peak): the guest's gst-launch player at volume 0.25 (-12 dBFS peak), the
# emulated USB mic at amplitude 0.5 (-6 dBFS), the shipped test tone (-20 dBFS).
PLAYER_RMS = -15.05
USB_MIC_RMS = -9.03
TEST_TONE_RMS = -23.0


def ffmpeg_pull(url, seconds, timeout=30):
    """Decodes `seconds` of a stream to mono 48 kHz S16LE; returns the bytes."""
    r = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
         "-timeout", "10000000", "-i", url, "-t", str(seconds),
         "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise HilError(f"ffmpeg failed on {url}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def audiocheck(pcm, *args):
    r = subprocess.run([AUDIOCHECK, "--rate", "48000", "--channels", "1", *map(str, args)],
                       input=pcm, capture_output=True, timeout=30)
    if r.returncode not in (0, 1):
        raise HilError(f"hark-audiocheck: {r.stderr.decode(errors='replace').strip()}")
    return r


def assert_tone(pcm, freq, what, level, seconds=2.9):
    """The tone at `freq` Hz and `level` dBFS RMS (±2 dB), at least `seconds`
    long, with at most one disturbed 250 ms window (hark-audiocheck's rules)."""
    r = audiocheck(pcm, "--seconds", seconds, "--freq", freq, "--level", level)
    print(f"hil: {what}: {r.stdout.decode().strip()}", flush=True)
    if r.returncode != 0:
        raise HilError(f"{what}: {r.stderr.decode(errors='replace').strip()}")


def tone_report(pcm):
    """{seconds, level_dbfs, freq_hz, windows} of a decoded tone, no verdict."""
    return json.loads(audiocheck(pcm, "--report").stdout)


# --- a minimal RTSP client -------------------------------------------------------

def rtsp_play(port, path, timeout=2.0):
    """DESCRIBE, SETUP (interleaved TCP) and PLAY; True when PLAY is answered 200."""
    url = f"rtsp://127.0.0.1:{port}/{path}"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        buf = b""

        def request(method, target, cseq, headers=""):
            nonlocal buf
            s.sendall(f"{method} {target} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n".encode())
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise HilError("connection closed")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode(errors="replace").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs = {k.strip().lower(): v.strip()
                    for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            length = int(hdrs.get("content-length", "0"))
            while len(buf) < length:
                buf += s.recv(4096)
            body, buf = buf[:length], buf[length:]
            return status, hdrs, body.decode(errors="replace")

        status, _, sdp = request("DESCRIBE", url, 1, "Accept: application/sdp\r\n")
        if status != 200:
            return False
        control = next((l.split(":", 1)[1].strip() for l in sdp.splitlines()
                        if l.startswith("a=control:") and l.strip() != "a=control:*"), "stream=0")
        track = control if control.startswith("rtsp://") else f"{url}/{control}"
        status, hdrs, _ = request("SETUP", track, 2,
                                  "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        if status != 200:
            return False
        session = hdrs.get("session", "").split(";")[0]
        status, _, _ = request("PLAY", url, 3, f"Session: {session}\r\n")
        return status == 200


# --- harkd in the guest -------------------------------------------------------------

GUEST_CONFIG = """
[rtsp]
bind = "0.0.0.0"
port = 8554

[http]
listen = "0.0.0.0:8780"
allow_non_loopback = true

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


def device_streams(g):
    st = g.http_json("/api/v1/status")
    return {s["name"]: s for s in st["streams"] if s.get("card") is not None}


def wait_loud(g, name, timeout=20):
    """Waits until harkd's level meter shows the tone on `name` (a loopback
    stream runs, silent, before the player has started)."""
    wait_until(f"/{name} carrying the tone", timeout, lambda: any(
        s["name"] == name and s["state"] == "running" and (s.get("rms_dbfs") or -200) > -30
        for s in g.http_json("/api/v1/status")["streams"]))


def play_into_loopback(g, freq, card):
    # plughw: snd-aloop makes the playback side take the format the capture side
    # opened with (harkd opens the card's native 32 channels).
    g.sh(f"gst-launch-1.0 -q audiotestsrc freq={freq} volume=0.25 is-live=true ! "
         "audio/x-raw,rate=48000,channels=2,format=S16LE ! "
         f"alsasink device=plughw:{card},1,0 buffer-time=1000000 > /tmp/play.log 2>&1 &")


# --- scenarios ----------------------------------------------------------------------

def scenario_aloop_hotplug(g):
    """snd-aloop loaded after harkd started: a real kernel card, real uevents
    through systemd-udevd, a stream whose audio a host client decodes; the card
    unbound mid-stream (as if unplugged) and bound again: same name, audio again."""
    start_harkd(g)
    t0 = time.monotonic()
    g.sh("modprobe snd-aloop")
    streams = wait_until("a stream for the Loopback card", 20, lambda: device_streams(g))
    name, st = next(iter(streams.items()))
    card = st["card"]
    print(f"hil: snd-aloop -> stream /{name} in {time.monotonic() - t0:.2f} s", flush=True)
    # The name is pinned into the card id (the kernel had called it "Loopback").
    card_id = g.sh(f"cat /proc/asound/card{card}/id")[1].strip()
    if card_id != name:
        raise HilError(f"card id {card_id!r}, wanted the stream name {name!r}")
    play_into_loopback(g, 1000, card)
    wait_loud(g, name)
    url = f"rtsp://127.0.0.1:{g.rtsp_port}/{name}"
    assert_tone(ffmpeg_pull(url, 3), 1000, f"/{name} before unplug", PLAYER_RMS)

    # Unbind the card while the stream runs: the card disappears with remove
    # uevents, the stream ends, the agent lives on.
    g.sh("echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/unbind")
    wait_until(f"/{name} removed", 10, lambda: name not in device_streams(g))
    if not harkd_alive(g):
        raise HilError("harkd died when the card went away")
    g.sh("echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/bind")
    wait_until(f"/{name} back", 20, lambda: name in device_streams(g))
    g.sh("pkill gst-launch-1.0; true")
    card = device_streams(g)[name]["card"]
    play_into_loopback(g, 440, card)
    wait_loud(g, name)
    assert_tone(ffmpeg_pull(url, 3), 440, f"/{name} after replug", PLAYER_RMS)


ALOOP_RATES_CONFIG = GUEST_CONFIG.replace("allow_non_usb = true", "allow_non_usb = false") + """
# Two capture substreams of the loopback card at other rates and channel counts.
[[stream]]
name = "hi-res"
source = "alsa"
device = "hw:Loopback,0,1"
codec = "l16"
sample_rate = 96000
channels = 2

[[stream]]
name = "narrow"
source = "alsa"
device = "hw:Loopback,0,2"
codec = "opus"
sample_rate = 16000
channels = 1
"""


def scenario_aloop_rates(g):
    """The data path at other rates and channel counts through a real kernel
    driver: snd-aloop substreams captured at 96 kHz stereo (L16) and 16 kHz mono
    (Opus), each fed its own tone, each decoded on the host."""
    g.sh("modprobe snd-aloop")
    start_harkd(g, ALOOP_RATES_CONFIG)
    for sub, rate, ch, freq in ((1, 96000, 2, 3000), (2, 16000, 1, 500)):
        g.sh(f"gst-launch-1.0 -q audiotestsrc freq={freq} volume=0.25 is-live=true ! "
             f"audio/x-raw,rate={rate},channels={ch},format=S16LE ! "
             f"alsasink device=plughw:Loopback,1,{sub} buffer-time=1000000 "
             f"> /tmp/play{sub}.log 2>&1 &")
    for name, freq in (("hi-res", 3000), ("narrow", 500)):
        wait_loud(g, name, 30)
        st = next(s for s in g.http_json("/api/v1/status")["streams"] if s["name"] == name)
        assert_tone(ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/{name}", 3), freq,
                    f"/{name} ({st['codec']} {st['sample_rate']} Hz {st['channels']} ch)",
                    PLAYER_RMS)


def wait_stream(g, what, timeout, pred=lambda name, st: True):
    def find():
        for name, st in device_streams(g).items():
            if pred(name, st):
                return name, st
        return None
    return wait_until(what, timeout, find)


def scenario_usb_hotplug(g):
    """An emulated USB mic plugged in over USB/IP: the guest's snd-usb-audio and
    udev see a real USB Audio Class device; its stream plays the mic's tone on
    the host; unplugged mid-stream with a client connected, the stream ends and
    the agent lives; plugged back, the same name returns with audio."""
    start_harkd(g)
    mic = UsbMic(g, serial="HILSER01", name="Field Mic", tone=1000)
    name, st = wait_stream(g, "the mic's stream", 20)
    print(f"hil: USB mic -> stream /{name} (card {st['card']}) in "
          f"{time.monotonic() - mic.plugged_at:.2f} s", flush=True)
    print(g.sh(f"cat /proc/asound/cards /proc/asound/card{st['card']}/stream0")[1], flush=True)
    wait_until(f"/{name} running", 20,
               lambda: device_streams(g).get(name, {}).get("state") == "running")
    url = f"rtsp://127.0.0.1:{g.rtsp_port}/{name}"
    # The level meter shows the tone before the pull: a mic just plugged may
    # take a moment to deliver at full rate (a pull right after "running"
    # decoded 2.88 s of 3 here once, 2.01 s once in the system tier).
    wait_loud(g, name)
    assert_tone(ffmpeg_pull(url, 3), 1000, f"/{name}", USB_MIC_RMS)
    # Unplug with a client connected: the client ends, the agent lives.
    client = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
         "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    t = time.monotonic()
    mic.stop()
    wait_until(f"/{name} removed", 10, lambda: name not in device_streams(g))
    try:
        client.wait(timeout=10)
    except subprocess.TimeoutExpired:
        client.kill()
        raise HilError("the RTSP client was not ended by the unplug")
    print(f"hil: unplug -> stream gone and client ended in {time.monotonic() - t:.2f} s",
          flush=True)
    if not harkd_alive(g):
        raise HilError("harkd died on unplug")
    # A vanished device is a removal, not a failure to retry: no capture is
    # restarted against the missing card (no backoff storm).
    time.sleep(3)
    log = g.sh("cat /tmp/harkd.log")[1].splitlines()
    retries = [l for l in log if '"restarting capture"' in l and f'"stream":"{name}"' in l]
    if retries:
        raise HilError(f"capture restarted against an unplugged mic: {retries[:3]}")
    scheduled = sum('"restart scheduled"' in l and f'"stream":"{name}"' in l for l in log)
    print(f"hil: after unplug: 0 restarts, {scheduled} scheduled and cancelled", flush=True)
    mic = UsbMic(g, serial="HILSER01", name="Field Mic", tone=440)
    back, _ = wait_stream(g, "the mic's stream again", 20)
    if back != name:
        raise HilError(f"replugged mic came back as /{back}, not /{name}")
    wait_until(f"/{name} running again", 20,
               lambda: device_streams(g).get(name, {}).get("state") == "running")
    wait_loud(g, name)
    assert_tone(ffmpeg_pull(url, 3), 440, f"/{name} after replug", USB_MIC_RMS)
    mic.stop()


def stream_tone(g, name, secs=2):
    """The frequency a stream carries (each emulated mic has its own tone, so
    this tells which physical mic a name is bound to)."""
    wait_until(f"/{name} running", 20,
               lambda: device_streams(g).get(name, {}).get("state") == "running")
    rep = tone_report(ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/{name}", secs))
    if abs(rep["level_dbfs"] - USB_MIC_RMS) > 2:
        raise HilError(f"/{name}: {rep['level_dbfs']:.1f} dBFS RMS, wanted {USB_MIC_RMS:.1f} ± 2")
    return round(rep["freq_hz"] / 100) * 100


def names_by_tone(g, expected):
    """{tone: stream name} for the device streams, waiting for `expected` of them."""
    wait_until(f"{expected} device streams", 30, lambda: len(device_streams(g)) == expected)
    return {stream_tone(g, n): n for n in device_streams(g)}


def scenario_identity(artifacts):
    """Two identical mics without serials on ports 0 and 1 and a mic with a
    serial on port 2, present before harkd starts (coldplug). Then a reboot
    (a new guest, the state directory carried over), the twins plugged in the
    other order, the serial mic on port 3: every mic keeps its name."""
    twins = dict(serial=None, name="Twin Mic", vendor="1209", product="7777")
    g = Guest(artifacts, "identity-boot1")
    try:
        mics = [UsbMic(g, port=0, tone=500, **twins), UsbMic(g, port=1, tone=700, **twins),
                UsbMic(g, port=2, tone=900, serial="SER-123", name="Serial Mic")]
        wait_until("three USB cards", 20,
                   lambda: g.sh("grep -c USB-Audio /proc/asound/cards", check=False)[1].strip() == "3")
        start_harkd(g)
        first = names_by_tone(g, 3)
        print(f"hil: boot 1 (coldplug): {first}", flush=True)
        if len(set(first.values())) != 3:
            raise HilError(f"names collide: {first}")
        cards = g.sh("cat /proc/asound/cards")[1]
        for name in first.values():
            if f"[{name.replace('-', '_')[:15]}" not in cards.replace(" ", ""):
                raise HilError(f"card id of /{name} not pinned:\n{cards}")
        ledger = g.sh("cat /var/lib/hark/names.json")[1]
        for m in mics:
            m.stop()
    finally:
        g.close()

    g = Guest(artifacts, "identity-boot2")
    try:
        g.write("/var/lib/hark/names.json", ledger)
        start_harkd(g)
        mics = [UsbMic(g, port=1, tone=700, **twins)]
        wait_until("the first twin", 20, lambda: len(device_streams(g)) == 1)
        mics.append(UsbMic(g, port=0, tone=500, **twins))
        mics.append(UsbMic(g, port=3, tone=900, serial="SER-123", name="Serial Mic"))
        second = names_by_tone(g, 3)
        print(f"hil: boot 2 (hotplug, twins swapped, serial mic moved): {second}", flush=True)
        if second != first:
            raise HilError(f"names changed across the reboot: {first} -> {second}")
        for m in mics:
            m.stop()
    finally:
        g.close()


def scenario_playback_only(g):
    """QEMU's own usb-audio (playback only) hot-plugged through the monitor: a
    real USB sound card with no capture, seen and ignored with a reason."""
    start_harkd(g)
    out = g.monitor("device_add usb-audio,id=ua1,audiodev=snd0,bus=xhci.0")
    if "Error" in out:
        raise HilError(f"device_add failed: {out}")

    def seen():
        devs = g.http_json("/api/v1/status")["devices"]
        return [d for d in devs if d.get("vendor_product") == "46f4:0002"] or None
    dev = wait_until("the usb-audio card in harkd's devices", 20, seen)[0]
    print(f"hil: playback-only card: status {dev['status']!r}, reason {dev['reason']!r}",
          flush=True)
    if dev["status"] == "streaming" or not dev.get("reason"):
        raise HilError(f"a playback-only card was not ignored with a reason: {dev}")
    if device_streams(g):
        raise HilError(f"a stream was started for it: {device_streams(g)}")


def guest_clock_offset(g):
    """host monotonic - guest monotonic, in seconds, and its uncertainty."""
    best = None
    for _ in range(5):
        t0 = time.monotonic()
        out = g.sh("grep -m1 'now at' /proc/timer_list")[1]
        t1 = time.monotonic()
        guest = int(out.split()[2]) / 1e9
        if best is None or t1 - t0 < best[1]:
            best = ((t0 + t1) / 2 - guest, t1 - t0)
    return best[0], best[1] / 2


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def scenario_hotplug_latency(g, plugs=20):
    """Plug the same mic 20 times: from the kernel's add uevent for its sound
    card (as udev's monitor saw it in the guest) to harkd's stream answering
    PLAY (a host client through the forwarded port). Target: under 1 s."""
    start_harkd(g)
    g.sh("udevadm monitor --kernel --subsystem-match=sound > /tmp/uevents.log 2>&1 &")
    time.sleep(0.5)
    latencies = []
    for i in range(plugs):
        mic = UsbMic(g, serial="LAT0001", name="Latency Mic", port=i % 4)
        name = None
        deadline = time.monotonic() + 15
        while True:
            if time.monotonic() > deadline:
                raise HilError(f"plug {i}: no PLAY within 15 s")
            if name is None:
                names = list(device_streams(g))
                name = names[0] if names else None
            if name is not None:
                try:
                    if rtsp_play(g.rtsp_port, name):
                        played = time.monotonic()
                        break
                except (OSError, HilError, ValueError):
                    pass
            time.sleep(0.01)
        offset, err = guest_clock_offset(g)
        log = g.sh("cat /tmp/uevents.log")[1]
        adds = [float(l.split("[")[1].split("]")[0]) for l in log.splitlines()
                if l.startswith("KERNEL[") and " add " in l and l.rstrip().endswith("(sound)")
                and "/sound/card" in l and "/controlC" not in l and "/pcm" not in l]
        if len(adds) != i + 1:
            raise HilError(f"plug {i}: {len(adds)} card add uevents seen:\n{log}")
        latency = played - (adds[-1] + offset)
        latencies.append(latency)
        mic.stop()
        wait_until(f"plug {i}: stream removed", 10, lambda: not device_streams(g))
    print(f"hil: hotplug latency per plug (ms; the first is the first device since harkd "
          f"started): {[round(x * 1000) for x in latencies]}", flush=True)
    print(f"hil: hotplug latency, add uevent -> PLAY answered, {plugs} plugs: "
          f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms (clock offset uncertainty +/-{err * 1000:.0f} ms)",
          flush=True)
    if percentile(latencies, 95) >= 1.0:
        raise HilError(f"p95 hotplug latency {percentile(latencies, 95):.2f} s is not under 1 s")


FIXTURES = os.path.join(HERE, "..", "agent", "tests", "fixtures")
# Fixture trees captured from the guest kernel (Debian's 6.1 kernel, its
# snd-usb-audio enumerating hark-usbip-mic devices), used by agent/tests/probe.rs.
TREES = {
    "qemu-usb-mics": [
        dict(port=0, serial="HIL-A1B2", name="Field Mic", rates="44100,48000,96000"),
        dict(port=1, serial=None, name="USB Audio Device", product="7777"),
        dict(port=2, serial=None, name="USB Audio Device", product="7777"),
        dict(port=3, serial="8I8-0001", name="Eight Input", channels=8, product="0808"),
    ],
    "qemu-bat-mic": [
        dict(port=0, serial="BAT-384", name="Bat Detector", rates="384000", product="0384"),
    ],
    # A CM108-style adapter: C-Media's ids and strings, no serial, 44.1/48 kHz
    # (capture only: the emulator has no playback interface).
    "qemu-cm108": [
        dict(port=0, serial=None, vendor="0d8c", product="0014",
             manufacturer="C-Media Electronics Inc.", name="USB PnP Sound Device",
             rates="48000,44100"),
    ],
}
# Onboard audio: QEMU's AC'97 controller, driven by the guest's snd-intel8x0 (a
# PCI card, which harkd ignores by default). (QEMU's intel-hda was tried first:
# under TCG the guest's snd-hda-intel gives up probing its codec.)
ONBOARD = ["-device", "AC97,audiodev=snd0"]


def read_tree(root):
    files = {}
    for dirpath, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                files[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    files[rel] = f.read()
            elif not os.listdir(p):
                files[rel] = "<empty dir>"
    return files


def capture_tree(g, tree, update):
    import io
    import tarfile
    g.sh(f"rm -rf /tmp/{tree} && capture-tree /tmp/{tree}")
    raw = base64.b64decode(g.sh(f"tar -C /tmp -cf - {tree} | base64")[1])
    got_dir = os.path.join(g.dir, "captured")
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        t.extractall(got_dir)
    got = read_tree(os.path.join(got_dir, tree))
    want_dir = os.path.join(FIXTURES, tree)
    if update:
        shutil.rmtree(want_dir, ignore_errors=True)
        shutil.copytree(os.path.join(got_dir, tree), want_dir, symlinks=True)
        print(f"hil: {tree}: fixture rewritten ({len(got)} entries)", flush=True)
        return
    want = read_tree(want_dir)
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        raise HilError(f"{tree}: the kernel's tree differs from the fixture in {diff[:10]}")
    print(f"hil: {tree}: the kernel's tree matches the fixture ({len(got)} entries)",
          flush=True)


def scenario_real_trees(artifacts):
    """What the real kernel shows for USB mics (a mic with a serial and three
    rates, serial-less twins, an 8-input device, a 384 kHz mic) is captured
    and compared with the committed fixture trees the probe tests use; with
    HIL_UPDATE_FIXTURES=1 the fixtures are rewritten instead."""
    update = os.environ.get("HIL_UPDATE_FIXTURES") == "1"
    g = Guest(artifacts, "real-trees")
    for tree, specs in TREES.items():
        mics = []
        for i, spec in enumerate(specs):
            mics.append(UsbMic(g, **spec))
            wait_until(f"{tree}: card {i}", 20, lambda: g.sh(
                "grep -c USB-Audio /proc/asound/cards", check=False)[1].strip() == str(i + 1))
        capture_tree(g, tree, update)
        for m in mics:
            m.stop()
        wait_until(f"{tree}: cards gone", 10, lambda: g.sh(
            "grep -c USB-Audio /proc/asound/cards", check=False)[1].strip() == "0")
    g.close()
    g = Guest(artifacts, "real-trees-onboard", extra=ONBOARD)
    wait_until("the AC'97 card", 30, lambda: "ICH" in g.sh("cat /proc/asound/cards")[1])
    capture_tree(g, "qemu-onboard", update)
    if update:
        raise FixturesUpdated(f"rewrote {', '.join([*TREES, 'qemu-onboard'])} under {FIXTURES}; "
                              "nothing was compared: review them with git diff")


# --- the system tier: Debian with systemd as PID 1, harkd installed as the README says

def boot_system(system_dir, name, disk=None):
    """Boots the system image (a fresh copy unless `disk` is given: reusing a
    disk is booting the same board again)."""
    if disk is None:
        work = tempfile.mkdtemp(prefix=f"hil-{name}-")
        disk = os.path.join(work, "disk.raw")
        subprocess.run(["cp", "--sparse=always", os.path.join(system_dir, "disk.raw"), disk],
                       check=True)
    g = Guest(system_dir, name, boot_timeout=240, disk=disk, workdir=os.path.dirname(disk))
    g.disk = disk
    print(f"hil: {name}: systemd guest ready in {g.boot_s:.1f} s", flush=True)
    return g


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


def scenario_system_service(system_dir):
    """harkd under systemd as installed: active with STATUS=, runs as user hark
    under the hardened unit and still serves audio, the D-Bus policy on the real
    system bus (root may call, nobody may only read), and a USB mic's card id
    pinned by the unprivileged agent through the udev rule."""
    g = boot_system(system_dir, "system-service")
    wait_active(g)
    wait_until("STATUS= in systemctl", 30,
               lambda: "1 stream running" in unit_props(g, "StatusText")["StatusText"])
    p = unit_props(g, "Type", "NotifyAccess", "WatchdogUSec", "MainPID", "StatusText")
    print(f"hil: harkd.service {p}", flush=True)
    if p["Type"] != "notify":
        raise HilError(f"unit type {p['Type']}")
    user = g.sh(f"ps -o user= -p {p['MainPID']}")[1].strip()
    if user != "hark":
        raise HilError(f"harkd runs as {user!r}, not hark")
    assert_tone(ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/test-tone", 3), 440,
                "/test-tone from the hardened unit", TEST_TONE_RMS)

    rc, out = g.sh("busctl introspect org.hark.Agent1 /org/hark/Agent1")
    for want in (".RestartStream", ".Reload", ".DeadmanState", ".StreamCount"):
        if want not in out:
            raise HilError(f"introspect lacks {want}:\n{out}")
    rc, out = agent_prop(g, "StreamCount", as_nobody=True)
    if rc != 0 or out.strip() != "u 1":
        raise HilError(f"nobody cannot read StreamCount: {rc} {out}")
    for method in ("Reload", "RestartStream s test-tone"):
        rc, out = g.sh("setpriv --reuid=65534 --regid=65534 --clear-groups busctl call "
                       f"org.hark.Agent1 /org/hark/Agent1 org.hark.Agent1 {method}", check=False)
        if rc == 0 or "Access denied" not in out:
            raise HilError(f"nobody was not denied {method}: {rc} {out}")
    g.sh("busctl call org.hark.Agent1 /org/hark/Agent1 org.hark.Agent1 RestartStream s test-tone")
    print("hil: D-Bus policy: nobody reads and is denied Reload/RestartStream; root calls",
          flush=True)

    mic = UsbMic(g, serial="SYS-0001", name="System Mic", tone=1000)
    streams = wait_until("the USB mic on D-Bus", 60, lambda: {
        n: v for n, v in bus_streams(g).items() if v.get("Card", -1) >= 0} or None)
    name, props = next(iter(streams.items()))
    card_id = g.sh(f"cat /proc/asound/card{props['Card']}/id")[1].strip()
    perms = g.sh(f"stat -c '%U:%G %A' /sys/class/sound/card{props['Card']}/id")[1].strip()
    print(f"hil: /{name}: card id {card_id!r} ({perms}), pinned by user hark", flush=True)
    if card_id != name.replace("-", "_")[:15]:
        raise HilError(f"card id {card_id!r} not pinned to /{name} (id file {perms})")
    assert_tone(ffmpeg_pull(f"rtsp://127.0.0.1:{g.rtsp_port}/{name}", 3), 1000, f"/{name}",
                USB_MIC_RMS)
    mic.stop()
    wait_until(f"/{name}'s D-Bus object removed", 20, lambda: name not in bus_streams(g))
    print(f"hil: unplugged: /{name} gone from the system bus", flush=True)


def scenario_system_watchdog(system_dir):
    """The watchdog on a real systemd: the GStreamer thread, then the supervisor
    loop, wedged on purpose (test hooks); systemd kills the agent and starts it
    again each time."""
    g = boot_system(system_dir, "system-watchdog")
    wait_active(g)
    g.write("/etc/systemd/system/harkd.service.d/hil.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/harkd run --config /etc/hark/hark.toml "
            "--test-hooks\nWatchdogSec=6s\n")
    g.sh("systemctl daemon-reload && systemctl restart harkd")
    wait_active(g)
    for sig, part in (("USR1", "GStreamer thread"), ("USR2", "supervisor loop")):
        wait_until("STATUS=", 30,
                   lambda: "stream running" in unit_props(g, "StatusText")["StatusText"])
        before = unit_props(g, "MainPID", "NRestarts")
        t = time.monotonic()
        g.sh(f"kill -{sig} {before['MainPID']}")
        wait_until(f"a restart after wedging the {part}", 60, lambda: (
            (p := unit_props(g, "MainPID", "NRestarts", "ActiveState"))["NRestarts"]
            != before["NRestarts"] and p["MainPID"] not in ("0", before["MainPID"])
            and p["ActiveState"] == "active"))
        print(f"hil: {part} wedged: killed by the watchdog and running again in "
              f"{time.monotonic() - t:.1f} s (WatchdogSec=6s)", flush=True)
    log = g.sh("journalctl -u harkd --no-pager")[1]
    if log.count("Watchdog timeout") < 2:
        raise HilError(f"the journal does not show two watchdog timeouts:\n{log[-3000:]}")


DEADMAN_CONFIG = """
[rtsp]
port = 8554

[devices]
enabled = false

[deadman]
enabled = true
max_reboots = 2
window_s = 3600
min_spacing_s = 5
unhealthy_after_s = 5

# A stream that can never run: the agent exits 4 and the deadman decides.
[[stream]]
name = "gone"
source = "alsa"
device = "hw:CARD=NoSuchCard"
"""


def scenario_system_deadman(system_dir):
    """A board whose only stream can never run, with the deadman allowing 2
    reboots an hour: the agent exits 4, harkd-deadman.service reboots through
    logind (QEMU started with -no-reboot exits, and the runner boots the same
    disk again), twice; on the third boot the ledger refuses, the board stays
    up, and D-Bus says so."""
    g = boot_system(system_dir, "system-deadman")
    wait_active(g)
    g.write("/etc/hark/hark.toml", DEADMAN_CONFIG)
    out = g.sh("harkd deadman mark-good")[1]
    print(f"hil: boot 1: {out.strip()}", flush=True)
    g.sh("systemctl restart harkd")
    boots, reboots = 1, 0
    while True:
        # Each boot ends in a reboot (QEMU exits), or the agent stays up refusing.
        deadline = time.monotonic() + 180
        refusing = False
        while time.monotonic() < deadline:
            if g.wait_exit(2):
                break
            try:
                state = agent_prop(g, "DeadmanState")[1].strip()
            except (HilError, OSError):
                # The reboot can cut the control channel mid-command.
                if g.wait_exit(30):
                    break
                raise
            if state == 's "refusing"':
                refusing = True
                break
        else:
            raise HilError(f"boot {boots}: neither a reboot nor a refusal within 180 s")
        if refusing:
            # And it stays that way: no reboot in the next 20 s.
            if g.wait_exit(20):
                raise HilError(f"boot {boots} rebooted after refusing")
            break
        reboots += 1
        print(f"hil: boot {boots} ended in a reboot ({reboots} so far)", flush=True)
        if reboots > 2:
            raise HilError("more reboots than the cap")
        g = boot_system(system_dir, f"system-deadman-boot{boots + 1}", disk=g.disk)
        boots += 1
    state = agent_prop(g, "DeadmanState")[1].strip()
    status = g.sh("harkd deadman status")[1]
    print(f"hil: boot {boots}: stays up; DeadmanState {state}\n{status}", flush=True)
    if reboots != 2 or boots != 3:
        raise HilError(f"{boots} boots and {reboots} reboots; wanted 3 and 2")
    if state != 's "refusing"':
        raise HilError(f"DeadmanState is {state}")
    if "reboots in window: 2" not in status or "a reboot now: refused" not in status:
        raise HilError(f"unexpected ledger status:\n{status}")


def scenario_hung_guest(g):
    """Not run on its own (see runner-bounds): the guest's CPUs are stopped
    through the QEMU monitor, so it hangs for real, and a command waits on it
    with no time limit of its own. Only the scenario's bound can end this."""
    print(f"hil: hung guest: qemu pid {g.proc.pid}, work dir {g.dir}", flush=True)
    g.sh("echo 'HIL: about to hang' > /dev/console")
    g.monitor("stop")
    g.sh("true", timeout=10**6)


def scenario_bound_in_retry(g):
    """Not run on its own (see runner-bounds): the scenario's bound expires
    inside wait_until, whose retry loop catches what its probe raises; the
    bound must still end the scenario as a failure."""
    print(f"hil: retrying guest: qemu pid {g.proc.pid}, work dir {g.dir}", flush=True)
    wait_until("something that never happens", 10**6, lambda: time.sleep(1) or False)
    print("hil: the retry loop outlived the bound", flush=True)


def scenario_crashed_guest(g):
    """Not run on its own (see runner-bounds): the guest kernel crashes
    (sysrq c; panic=-1 and -no-reboot make QEMU exit) in the middle of a
    command."""
    print(f"hil: crashed guest: qemu pid {g.proc.pid}, work dir {g.dir}", flush=True)
    g.sh("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger", timeout=60)


def scenario_runner_bounds(fast_dir):
    """The runner itself: a guest that hangs is killed when its scenario's
    bound expires, and one whose kernel crashes is seen at once; both are
    reported as failures with their serial console, the run's exit status is
    1, and no QEMU process or work directory is left behind."""
    bound = 15
    t = time.monotonic()
    p = subprocess.run([sys.executable, os.path.abspath(__file__), fast_dir,
                        "_hung-guest", "_crashed-guest", "_bound-in-retry"],
                       env={**os.environ, "HIL_HUNG_BOUND": str(bound)},
                       capture_output=True, text=True, timeout=240)
    out = p.stdout + p.stderr
    took = time.monotonic() - t
    print(f"hil: runner-bounds: the inner run exited {p.returncode} after {took:.0f} s", flush=True)
    expect = [
        f"hil: _hung-guest: FAIL: scenario exceeded its {bound} s bound",
        "--- serial console of _hung-guest ---",
        "HIL: about to hang",
        "hil: _crashed-guest: FAIL: ",
        "--- serial console of _crashed-guest ---",
        "sysrq: Trigger a crash",
        f"hil: _bound-in-retry: FAIL: scenario exceeded its {bound} s bound",
        "hil: FAIL _hung-guest",
        "hil: FAIL _crashed-guest",
        "hil: FAIL _bound-in-retry",
        "hil: 0/3 passed",
    ]
    missing = [e for e in expect if e not in out]
    if p.returncode != 1 or missing or "PASS" in out or "outlived the bound" in out:
        raise HilError(f"the runner did not report a hung, a crashed and an overrunning "
                       f"guest as failures "
                       f"(exit {p.returncode}; missing {missing}):\n{out[-6000:]}")
    guests = [line for line in out.splitlines()
              if line.startswith(("hil: hung guest: qemu pid", "hil: crashed guest: qemu pid",
                                  "hil: retrying guest: qemu pid"))]
    if len(guests) != 3:
        raise HilError(f"the inner run did not start all three guests:\n{out[-6000:]}")
    for line in guests:
        pid, workdir = int(line.split()[5].rstrip(",")), line.split("work dir ")[1]
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"qemu-system" in f.read():
                    raise HilError(f"QEMU {pid} is still running after its scenario failed")
        except FileNotFoundError:
            pass
        if os.path.exists(workdir):
            raise HilError(f"{workdir} was left behind")


SCENARIOS = {
    # name: (function, time bound in s, what it is given)
    "runner-bounds": (scenario_runner_bounds, 300, "fast-artifacts"),
    "aloop-hotplug": (scenario_aloop_hotplug, 240, "fast"),
    "aloop-rates": (scenario_aloop_rates, 240, "fast"),
    "usb-hotplug": (scenario_usb_hotplug, 240, "fast"),
    "playback-only": (scenario_playback_only, 120, "fast"),
    "identity": (scenario_identity, 300, "fast-artifacts"),
    "hotplug-latency": (scenario_hotplug_latency, 400, "fast"),
    "real-trees": (scenario_real_trees, 300, "fast-artifacts"),
    "system-service": (scenario_system_service, 400, "system"),
    "system-watchdog": (scenario_system_watchdog, 400, "system"),
    "system-deadman": (scenario_system_deadman, 900, "system"),
}
# Run only by runner-bounds, which expects them to fail.
INNER = {
    "_hung-guest": (scenario_hung_guest, int(os.environ.get("HIL_HUNG_BOUND", "15")), "fast"),
    "_crashed-guest": (scenario_crashed_guest, 120, "fast"),
    "_bound-in-retry": (scenario_bound_in_retry, int(os.environ.get("HIL_HUNG_BOUND", "15")),
                        "fast"),
}


def run(fast_dir, system_dir, names):
    import signal
    results = []
    # The accelerator probe (up to 15 s) is not charged to the first scenario.
    accel(fast_dir)
    for name in names:
        fn, limit, tier = {**SCENARIOS, **INNER}[name]
        t = time.monotonic()
        LIVE.clear()

        def on_alarm(*_):
            raise ScenarioTimeout(f"scenario exceeded its {limit} s bound")
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(limit)
        try:
            if tier == "fast":
                g = Guest(fast_dir, name)
                print(f"hil: {name}: booted in {g.boot_s:.1f} s", flush=True)
                fn(g)
            elif tier == "fast-artifacts":
                fn(fast_dir)
            else:
                if system_dir is None:
                    raise HilError("the system tier's artifacts were not given (--system DIR)")
                fn(system_dir)
            signal.alarm(0)
            results.append((name, True, time.monotonic() - t))
            print(f"hil: {name}: PASS in {time.monotonic() - t:.1f} s", flush=True)
        except FixturesUpdated as e:
            signal.alarm(0)
            results.append((name, False, time.monotonic() - t))
            print(f"hil: {name}: UPDATED, not a pass: {e}", flush=True)
        except (Exception, ScenarioTimeout) as e:
            signal.alarm(0)
            results.append((name, False, time.monotonic() - t))
            print(f"hil: {name}: FAIL: {e}", flush=True)
            traceback.print_exc()
            for g in LIVE:
                print(f"--- serial console of {g.name} ---\n{g.console_text()[-6000:]}", flush=True)
                try:
                    if g.proc is not None and g.proc.poll() is None:
                        print(f"--- harkd log ---\n{g.sh('tail -n 60 /tmp/harkd.log 2>/dev/null || journalctl -b --no-pager -n 80', timeout=10)[1]}")
                except Exception:
                    pass
        finally:
            for g in LIVE:
                g.close()
                shutil.rmtree(g.dir, ignore_errors=True)
    return results


def main():
    args = sys.argv[1:]
    system_dir = None
    if "--system" in args:
        i = args.index("--system")
        system_dir = args[i + 1]
        del args[i:i + 2]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    fast_dir, names = args[0], args[1:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS and n not in INNER]
    if unknown:
        print(f"unknown scenarios: {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    t = time.monotonic()
    results = run(fast_dir, system_dir, names)
    for name, ok, secs in results:
        print(f"hil: {'PASS' if ok else 'FAIL'} {name} ({secs:.0f} s)")
    print(f"hil: {sum(ok for _, ok, _ in results)}/{len(results)} passed "
          f"in {time.monotonic() - t:.0f} s", flush=True)
    return 0 if results and all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
