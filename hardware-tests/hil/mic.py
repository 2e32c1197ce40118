"""The emulated USB microphone (hardware-tests/usbip-mic): plugged into a
guest's vhci-hcd port over USB/IP."""

import os
import subprocess
import time

from .common import HERE, HilError


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
