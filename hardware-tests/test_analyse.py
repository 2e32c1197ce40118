"""The runner's tone analysis (hil.py `analyse`/`assert_tone`) on synthetic
decoded audio: right tones pass, a gap from a starved guest player does not
move the frequency, a wrong or mostly missing tone fails. Run by `make hil`
before any guest boots."""

import math
import random
import unittest

import hil


def tone(freq, secs=3.0, gaps=(), noise=False):
    s = [int(8192 * math.sin(2 * math.pi * freq * i / 48000)) for i in range(int(48000 * secs))]
    rng = random.Random(1)
    for a, b in gaps:
        for i in range(int(a * 48000), int(b * 48000)):
            s[i] = rng.choice([-2, -1, 1, 2]) if noise else 0
    return s


class Analyse(unittest.TestCase):
    def test_clean_tones(self):
        for f in (440, 500, 1000, 3000):
            dbfs, got, disturbed = hil.analyse(tone(f))
            self.assertAlmostEqual(got, f, delta=f * 0.002)
            self.assertAlmostEqual(dbfs, -15.05, delta=0.1)
            self.assertEqual(disturbed, 0)

    def test_a_gap_of_zeros_does_not_move_the_frequency(self):
        # The L16 flake: 2926 Hz for 3000 by a whole-pull crossing count.
        _, got, _ = hil.analyse(tone(3000, gaps=[(1.3, 1.362)]))
        self.assertAlmostEqual(got, 3000, delta=6)

    def test_a_gap_of_decoded_noise_is_reported_not_counted(self):
        # The Opus flake: 464 Hz for 440 by a whole-pull crossing count.
        _, got, disturbed = hil.analyse(tone(440, gaps=[(1.3, 1.36)], noise=True))
        self.assertAlmostEqual(got, 440, delta=2)
        self.assertGreater(disturbed, 0)
        hil.assert_tone(tone(440, gaps=[(1.3, 1.36)], noise=True), 440, "one gap")

    def test_a_wrong_or_mostly_missing_tone_fails(self):
        with self.assertRaises(hil.HilError):
            hil.assert_tone(tone(460), 440, "wrong tone")
        with self.assertRaises(hil.HilError):
            hil.assert_tone(tone(3000, gaps=[(0.5, 2.0)], noise=True), 3000, "mostly missing")
        with self.assertRaises(hil.HilError):
            hil.assert_tone([0] * 48000 * 3, 440, "silence")


if __name__ == "__main__":
    unittest.main()
