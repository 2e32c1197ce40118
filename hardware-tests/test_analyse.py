"""The runner's tone checks (hil/audio.py `assert_tone`/`tone_report`) through the
shared analysis binary, hark-audiocheck, on synthetic decoded audio: a right
tone passes, a wrong, short, silent or broken one raises HilError. The rules
themselves are tested in tools/audiocheck; this proves the runner uses them
and reads the verdict. Run by `make hil` before any guest boots."""

import math
import struct
import unittest

from hil.audio import PLAYER_RMS, USB_MIC_RMS, assert_tone, longest_gap_ms, pcm_sketch, tone_report
from hil.common import HilError
from hil.mic import bus_gaps


def tone(freq, secs=3.0, peak=0.25, gaps=()):
    s = [int(peak * 32767 * math.sin(2 * math.pi * freq * i / 48000))
         for i in range(int(48000 * secs))]
    for a, b in gaps:
        for i in range(int(a * 48000), int(b * 48000)):
            s[i] = 0
    return struct.pack(f"<{len(s)}h", *s)


class Runner(unittest.TestCase):
    def test_the_gap_measure_sees_a_dropout_and_not_a_tone(self):
        # group-hotplug's "no gap of 200 ms" on a member's channel.
        self.assertLess(longest_gap_ms(tone(500, peak=0.5)), 1.0)
        gap = longest_gap_ms(tone(500, peak=0.5, gaps=[(1.0, 1.25)]))
        self.assertGreater(gap, 240)
        self.assertLess(gap, 252)

    def test_a_right_tone_passes(self):
        assert_tone(tone(1000), 1000, "clean", PLAYER_RMS)
        assert_tone(tone(3000, gaps=[(1.3, 1.362)]), 3000, "one short gap", PLAYER_RMS)

    def test_every_broken_rule_raises(self):
        cases = {
            "wrong tone": (tone(460), 440, PLAYER_RMS),
            "wrong level": (tone(440, peak=0.5), 440, PLAYER_RMS),
            "short": (tone(440, secs=1.0), 440, PLAYER_RMS),
            "silence": (bytes(3 * 48000 * 2), 440, PLAYER_RMS),
            "dropouts": (tone(440, gaps=[(0.8, 0.85), (1.6, 1.65)]), 440, PLAYER_RMS),
        }
        for what, (pcm, freq, level) in cases.items():
            with self.subTest(what), self.assertRaises(HilError):
                assert_tone(pcm, freq, what, level)

    def test_report(self):
        rep = tone_report(tone(700))
        self.assertAlmostEqual(rep["freq_hz"], 700, delta=1)
        self.assertAlmostEqual(rep["level_dbfs"], -15.05, delta=0.1)

    def test_the_sketch_tells_a_tone_from_silence_and_a_constant(self):
        constant = struct.pack("<12000h", *[5000] * 12000)
        lines = pcm_sketch(tone(500, secs=0.5, gaps=[(0.25, 0.5)]) + constant).split("\n")
        self.assertEqual(len(lines), 3)
        self.assertIn("-15.1 dBFS", lines[0])
        self.assertIn("124 rising crossings", lines[0])
        self.assertIn("-200.0 dBFS", lines[1])
        self.assertIn("mean   5000.0", lines[2])
        self.assertIn(" 0 rising crossings", lines[2])



class BusLoss(unittest.TestCase):
    """The USB scenarios subtract only the audio the emulated mic logged as
    lost on its bus, only inside the pull's window, from the duration a pull
    must decode (hil/mic.py)."""

    LOG = [
        "hark-usbip-mic: at 2.089 s: no transfer queued by the guest for 20 ms (669 ms served so far)",
        "hark-usbip-mic: at 2.348 s: no transfer queued by the guest for 28 ms (908 ms served so far)",
        "hark-usbip-mic: at 3.500 s: this process was 40 ms late; catching up",
        "hark-usbip-mic: at 9.000 s: no transfer queued by the guest for 300 ms (7000 ms served so far)",
    ]

    def test_only_gaps_in_the_window_count(self):
        self.assertEqual(bus_gaps(self.LOG, 100.0, 101.0, 105.0), [20, 28])
        self.assertEqual(bus_gaps(self.LOG, 100.0, 102.2, 105.0), [28])
        self.assertEqual(bus_gaps(self.LOG, 100.0, 105.0, 110.0), [300])
        self.assertEqual(bus_gaps([], 100.0, 0.0, 1e9), [])

    def test_a_short_pull_without_bus_loss_still_fails(self):
        # 2.85 s decoded and nothing lost on the bus: the agent lost it.
        with self.assertRaises(HilError):
            assert_tone(tone(1000, secs=2.85, peak=0.5), 1000, "agent loss", USB_MIC_RMS,
                        seconds=round(2.9 - sum(bus_gaps(self.LOG, 100.0, 110.0, 113.0)) / 1000, 3))
        # The same pull with 60 ms lost on the bus during it passes.
        assert_tone(tone(1000, secs=2.85, peak=0.5), 1000, "bus loss", USB_MIC_RMS,
                    seconds=round(2.9 - 60 / 1000, 3))


if __name__ == "__main__":
    unittest.main()
