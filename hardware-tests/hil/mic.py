"""The emulated USB microphone (hardware-tests/usbip-mic): plugged into a
guest's vhci-hcd port over USB/IP."""

import os
import re
import subprocess
import time

from .audio import USB_MIC_RMS, assert_tone, ffmpeg_pull
from .common import HERE, HilError


USBIP_MIC = os.environ.get("HIL_USBIP_MIC", os.path.join(HERE, "..", "target", "release",
                                                         "hark-usbip-mic"))


GAP = re.compile(r"at ([0-9.]+) s: no transfer queued by the guest for ([0-9]+) ms")


def bus_gaps(lines, plugged_at, t0, t1):
    """The gaps (ms) the emulated mic logged as lost audio (no transfer queued
    by the guest) that began between monotonic times t0 and t1; the mic's clock
    starts when it reports itself plugged (`plugged_at`)."""
    gaps = []
    for line in lines:
        m = GAP.search(line)
        if m and t0 <= plugged_at + float(m.group(1)) <= t1:
            gaps.append(int(m.group(2)))
    return gaps


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

    def log_lines(self):
        """What the mic logged (its gaps among them: see pace() in usbip-mic)."""
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace").splitlines()

    def assert_tone(self, url, freq, what):
        """Pulls 3 s of `url` and checks this mic's tone with the shared rules
        (audio.assert_tone), minus the audio the emulated bus lost meanwhile.

        A USB microphone fills only the transfers its host has queued (Linux's
        snd-usb-audio keeps about 18 ms queued); when the guest kernel, starved
        of CPU under TCG, queues none for longer, that audio never exists, on a
        real bus as here. The mic logs each such gap, so the pull must carry
        all the rest: 2.9 s minus what the bus lost, so the agent may lose at
        most 0.1 s as before. A guest so starved that the bus lost more than
        1 s of the pull fails as unmeasurable (too little audio is left to
        judge level, frequency and continuity)."""
        pcm = ffmpeg_pull(url, 3)
        t1 = time.monotonic()
        lines = self.log_lines()
        # 3 s of stream time (gaps included: the timestamps run on) end when
        # ffmpeg does; the audio crosses the agent and the network in well under
        # 0.2 s, so only gaps that began in the 3.2 s before the exit count.
        gaps = bus_gaps(lines, self.plugged_at, t1 - 3.2, t1)
        lost = sum(gaps)
        if lost:
            print(f"hil: {what}: the emulated bus lost {lost} ms of the pull in {len(gaps)} "
                  f"gaps of {min(gaps)}-{max(gaps)} ms (the guest queued no transfer)",
                  flush=True)
        if lost > 1000:
            raise HilError(f"{what}: the bus lost {lost} ms of a 3 s pull; the guest is too "
                           "starved of CPU to judge the agent")
        assert_tone(pcm, freq, what, USB_MIC_RMS, seconds=round(2.9 - lost / 1000, 3))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()
