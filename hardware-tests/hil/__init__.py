"""The hardware-in-the-loop runner (hardware-tests/README.md), a package run as
`python3 hardware-tests/hil.py` or `python3 -m hil` from hardware-tests/:

  common            errors (ScenarioTimeout is a BaseException), wait_until, paths
  guest             QEMU guests: boot, console, command channel, monitor; the KVM probe
  mic               the emulated USB microphone (hark-usbip-mic)
  audio             ffmpeg pulls, hark-audiocheck, a minimal RTSP client
  agent             harkd in the guest: start, status, streams, unit, D-Bus
  runner            time bounds, failure reports, the summary
  scenarios_fast    the fast tier (initramfs)
  scenarios_system  the system tier (systemd)
  scenarios_self    runner-bounds and the inner scenarios it expects to fail
  __main__          the command line; the scenario tables, in run order

Importing the package loads no scenario: `import hil` gives the tone checks
other scripts use (scripts/fresh-check.sh)."""

from .audio import PLAYER_RMS, TEST_TONE_RMS, USB_MIC_RMS, assert_tone, ffmpeg_pull, tone_report
from .common import HilError

__all__ = ["HilError", "PLAYER_RMS", "TEST_TONE_RMS", "USB_MIC_RMS", "assert_tone",
           "ffmpeg_pull", "tone_report"]
