//! The one analysis of a decoded test tone, shared by every test tier: the cargo
//! tests link this library, the QEMU scenarios (`hardware-tests/hil.py`) and the
//! fresh-machine check run the `hark-audiocheck` binary on what their clients
//! decoded. One set of rules, one set of tolerances, tested here on synthetic
//! audio.
//!
//! A tone passes when all of these hold:
//! - **duration**: at least the seconds asked for were decoded;
//! - **level**: the RMS level (after the codec's start-up) is within a stated
//!   tolerance of the expected one (a sine's RMS is 3 dB under its peak);
//! - **frequency**: the median of per-window estimates is within 2 % (a gap moves
//!   only its own window, never the median: the estimate that a whole-pull
//!   zero-crossing count gives moved 2.5 % under a 62 ms gap);
//! - **continuity**: at most `max_disturbed` windows (default: one) are quiet or
//!   off the expected frequency. One 250 ms window covers a single short gap; a
//!   stream with dropouts in several windows fails.
//!
//! Owns: arithmetic on samples. Must not touch: processes, files, the network.

/// Length of one analysis window.
pub const WINDOW_S: f64 = 0.25;
/// Decoded audio skipped at the start (codec priming, the client's start-up).
pub const SKIP_S: f64 = 0.25;
/// How far a window's (and the median) frequency may be from the expected one.
pub const FREQ_TOLERANCE: f64 = 0.02;
/// A window this far under the expected level is a dropout.
pub const QUIET_BELOW_DB: f64 = 6.0;

/// Interleaved signed 16-bit samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Pcm {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<i16>,
}

impl Pcm {
    /// Little-endian S16 bytes, as `ffmpeg -f s16le` writes them; a trailing odd
    /// byte or partial frame is dropped.
    pub fn from_s16le(bytes: &[u8], rate: u32, channels: u16) -> Pcm {
        let mut samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        let frame = usize::from(channels.max(1));
        samples.truncate(samples.len() / frame * frame);
        Pcm {
            rate,
            channels: channels.max(1),
            samples,
        }
    }

    pub fn mono(rate: u32, samples: Vec<i16>) -> Pcm {
        Pcm {
            rate,
            channels: 1,
            samples,
        }
    }

    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels)
    }

    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.rate)
    }

    /// One channel's samples (0-based); empty when there is no such channel.
    pub fn channel(&self, c: u16) -> Vec<i16> {
        if c >= self.channels {
            return Vec::new();
        }
        self.samples
            .iter()
            .skip(usize::from(c))
            .step_by(usize::from(self.channels))
            .copied()
            .collect()
    }
}

/// One window's measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub level_dbfs: f64,
    /// None when the window has fewer than three rising zero crossings.
    pub freq_hz: Option<f64>,
}

/// What one channel of a decoded tone measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub seconds: f64,
    /// RMS over everything after [`SKIP_S`].
    pub level_dbfs: f64,
    /// Median of the windows' estimates; 0 when no window had one.
    pub freq_hz: f64,
    pub windows: Vec<Window>,
}

/// RMS level in dBFS of the component of `s` at `freq_hz` (Goertzel over a
/// Hann window): a sine at that frequency with an RMS of r dBFS reads about r;
/// a tone elsewhere (more than a few Hz away over a second) reads far lower.
pub fn tone_dbfs(s: &[i16], rate: u32, freq_hz: f64) -> f64 {
    let n = s.len();
    if n < 2 {
        return f64::NEG_INFINITY;
    }
    let w = 2.0 * std::f64::consts::PI * freq_hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (i, x) in s.iter().enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        let v = f64::from(*x) / 32768.0 * hann + coeff * s1 - s2;
        s2 = s1;
        s1 = v;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    // |X| = A * N / 4 under a Hann window; RMS = A / sqrt 2.
    let amplitude = 4.0 * power.sqrt() / n as f64;
    20.0 * (amplitude / std::f64::consts::SQRT_2).log10()
}

/// RMS level in dBFS; -inf for no samples.
pub fn rms_dbfs(s: &[i16]) -> f64 {
    if s.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = s.iter().map(|x| (f64::from(*x) / 32768.0).powi(2)).sum();
    10.0 * (sum / s.len() as f64).log10()
}

/// Frequency from the rising zero crossings of a window, each placed between its
/// two samples by linear interpolation.
fn window_freq(w: &[i16], rate: u32) -> Option<f64> {
    let ups: Vec<f64> = w
        .windows(2)
        .enumerate()
        .filter(|(_, p)| p[0] < 0 && p[1] >= 0)
        .map(|(k, p)| {
            let (a, b) = (f64::from(p[0]), f64::from(p[1]));
            k as f64 + (-a) / (b - a)
        })
        .collect();
    let (first, last) = (ups.first()?, ups.last()?);
    if ups.len() < 3 || last <= first {
        return None;
    }
    Some((ups.len() - 1) as f64 * f64::from(rate) / (last - first))
}

/// Analyses one channel (mono samples at `rate`).
pub fn analyse(mono: &[i16], rate: u32) -> Analysis {
    let skip = ((SKIP_S * f64::from(rate)) as usize).min(mono.len());
    let s = &mono[skip..];
    let n = ((WINDOW_S * f64::from(rate)) as usize).max(1);
    let windows: Vec<Window> = s
        .chunks_exact(n)
        .map(|w| Window {
            level_dbfs: rms_dbfs(w),
            freq_hz: window_freq(w, rate),
        })
        .collect();
    let mut freqs: Vec<f64> = windows.iter().filter_map(|w| w.freq_hz).collect();
    freqs.sort_by(f64::total_cmp);
    Analysis {
        seconds: mono.len() as f64 / f64::from(rate),
        level_dbfs: rms_dbfs(s),
        freq_hz: freqs.get(freqs.len() / 2).copied().unwrap_or(0.0),
        windows,
    }
}

/// What a decoded tone must be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expect {
    /// Decoded seconds, at least.
    pub seconds: f64,
    pub freq_hz: f64,
    /// Expected RMS level (a sine at P dBFS peak has an RMS of P - 3 dB).
    pub level_dbfs: f64,
    pub level_tolerance_db: f64,
    /// Windows allowed to be quiet or off frequency.
    pub max_disturbed: usize,
}

impl Expect {
    /// A tone at `freq_hz` with RMS `level_dbfs` (±2 dB), at least `seconds`
    /// long, with at most one disturbed window.
    pub fn tone(seconds: f64, freq_hz: f64, level_dbfs: f64) -> Expect {
        Expect {
            seconds,
            freq_hz,
            level_dbfs,
            level_tolerance_db: 2.0,
            max_disturbed: 1,
        }
    }
}

/// |x - want| <= tolerance; false for NaN and for an infinite x (silence).
fn within(x: f64, want: f64, tolerance: f64) -> bool {
    (x - want).abs() <= tolerance
}

impl Analysis {
    /// Windows that are quiet (a dropout) or off the expected frequency.
    pub fn disturbed(&self, e: &Expect) -> usize {
        self.windows
            .iter()
            .filter(|w| {
                w.level_dbfs < e.level_dbfs - QUIET_BELOW_DB
                    || w.freq_hz
                        .is_none_or(|f| (f - e.freq_hz).abs() > e.freq_hz * FREQ_TOLERANCE)
            })
            .count()
    }

    /// One line for logs: duration, level, frequency, windows.
    pub fn summary(&self, e: &Expect) -> String {
        format!(
            "{:.2} s decoded, {:.1} dBFS RMS, {:.1} Hz, {} of {} windows disturbed",
            self.seconds,
            self.level_dbfs,
            self.freq_hz,
            self.disturbed(e),
            self.windows.len()
        )
    }

    /// Every rule the tone breaks, or Ok.
    pub fn check(&self, e: &Expect) -> Result<(), String> {
        let mut broken = Vec::new();
        if self.seconds + 1e-9 < e.seconds {
            broken.push(format!(
                "{:.2} s decoded, wanted at least {:.2} s",
                self.seconds, e.seconds
            ));
        }
        if self.windows.len() < 2 {
            broken.push(format!(
                "{} analysis window(s) of {WINDOW_S} s after the first {SKIP_S} s; need 2",
                self.windows.len()
            ));
        }
        if !within(self.level_dbfs, e.level_dbfs, e.level_tolerance_db) {
            broken.push(format!(
                "level {:.1} dBFS RMS, wanted {:.1} ± {:.1}",
                self.level_dbfs, e.level_dbfs, e.level_tolerance_db
            ));
        }
        if !within(self.freq_hz, e.freq_hz, e.freq_hz * FREQ_TOLERANCE) {
            broken.push(format!(
                "frequency {:.1} Hz, wanted {:.1} ± 2 %",
                self.freq_hz, e.freq_hz
            ));
        }
        let disturbed = self.disturbed(e);
        if disturbed > e.max_disturbed {
            broken.push(format!(
                "{disturbed} of {} windows of {WINDOW_S} s quiet or off frequency (at most {} allowed)",
                self.windows.len(),
                e.max_disturbed
            ));
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(format!("{} ({})", broken.join("; "), self.summary(e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: u32 = 48_000;

    /// A sine at `peak` (linear, of full scale) with `gaps` (start, end seconds)
    /// filled with zeros or with ±2 LSB noise (an Opus decoder's silence).
    fn tone(freq: f64, secs: f64, peak: f64, gaps: &[(f64, f64)], noise: bool) -> Vec<i16> {
        let mut s: Vec<i16> = (0..(secs * f64::from(R)) as usize)
            .map(|i| {
                (peak
                    * 32767.0
                    * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(R)).sin())
                    as i16
            })
            .collect();
        let mut x = 1u32;
        for (a, b) in gaps {
            for v in &mut s[(a * f64::from(R)) as usize..(b * f64::from(R)) as usize] {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *v = if noise {
                    [-2, -1, 1, 2][(x >> 16) as usize % 4]
                } else {
                    0
                };
            }
        }
        s
    }

    /// A 0.25 peak sine: -12 dBFS peak, -15.05 dBFS RMS.
    const PEAK: f64 = 0.25;
    const RMS: f64 = -15.05;

    #[test]
    fn clean_tones_pass_with_their_frequency_and_level() {
        for f in [440.0, 500.0, 1000.0, 3000.0] {
            let a = analyse(&tone(f, 3.0, PEAK, &[], false), R);
            assert!((a.freq_hz - f).abs() < f * 0.001, "{f}: {}", a.freq_hz);
            assert!((a.level_dbfs - RMS).abs() < 0.1, "{}", a.level_dbfs);
            assert_eq!(a.disturbed(&Expect::tone(3.0, f, RMS)), 0);
            a.check(&Expect::tone(3.0, f, RMS)).unwrap();
        }
    }

    #[test]
    fn one_short_gap_passes_and_is_counted() {
        // The L16 flake in QEMU: a 62 ms gap of zeros (2926 Hz for 3000 by a
        // whole-pull count); and the Opus one: decoded noise (464 Hz for 440).
        for (f, noise) in [(3000.0, false), (440.0, true)] {
            let a = analyse(&tone(f, 3.0, PEAK, &[(1.3, 1.362)], noise), R);
            assert!((a.freq_hz - f).abs() < f * 0.002, "{f}: {}", a.freq_hz);
            let e = Expect::tone(3.0, f, RMS);
            assert_eq!(a.disturbed(&e), 1, "{}", a.summary(&e));
            a.check(&e).unwrap();
        }
    }

    #[test]
    fn dropouts_in_several_windows_fail() {
        let a = analyse(
            &tone(440.0, 3.0, PEAK, &[(0.8, 0.85), (1.6, 1.65)], true),
            R,
        );
        let err = a.check(&Expect::tone(3.0, 440.0, RMS)).unwrap_err();
        assert!(err.contains("2 of 11 windows"), "{err}");
    }

    #[test]
    fn a_wrong_tone_fails() {
        let err = analyse(&tone(460.0, 3.0, PEAK, &[], false), R)
            .check(&Expect::tone(3.0, 440.0, RMS))
            .unwrap_err();
        assert!(err.contains("frequency 460.0 Hz"), "{err}");
    }

    #[test]
    fn a_mostly_missing_tone_fails() {
        let err = analyse(&tone(3000.0, 3.0, PEAK, &[(0.5, 2.0)], true), R)
            .check(&Expect::tone(3.0, 3000.0, RMS))
            .unwrap_err();
        assert!(
            err.contains("windows of 0.25 s quiet or off frequency"),
            "{err}"
        );
        assert!(err.contains("level"), "{err}");
    }

    #[test]
    fn silence_fails_on_level_and_frequency() {
        let err = analyse(&[0; 3 * 48_000], R)
            .check(&Expect::tone(3.0, 440.0, RMS))
            .unwrap_err();
        assert!(err.contains("level -inf dBFS"), "{err}");
        assert!(err.contains("frequency 0.0 Hz"), "{err}");
    }

    #[test]
    fn a_wrong_level_fails() {
        // 6 dB louder than expected: a gain applied twice.
        let err = analyse(&tone(1000.0, 3.0, PEAK * 2.0, &[], false), R)
            .check(&Expect::tone(3.0, 1000.0, RMS))
            .unwrap_err();
        assert!(err.contains("level -9.0 dBFS RMS, wanted -15.1"), "{err}");
    }

    #[test]
    fn a_short_pull_fails_on_duration() {
        // One second decoded of three asked for (the QEMU check let this pass).
        let err = analyse(&tone(440.0, 1.0, PEAK, &[], false), R)
            .check(&Expect::tone(2.9, 440.0, RMS))
            .unwrap_err();
        assert!(
            err.contains("1.00 s decoded, wanted at least 2.90 s"),
            "{err}"
        );
    }

    #[test]
    fn too_little_audio_to_analyse_fails() {
        let err = analyse(&tone(440.0, 0.6, PEAK, &[], false), R)
            .check(&Expect::tone(0.5, 440.0, RMS))
            .unwrap_err();
        assert!(err.contains("1 analysis window(s)"), "{err}");
    }

    #[test]
    fn channels_are_taken_apart() {
        let (l, r) = (
            tone(500.0, 2.0, PEAK, &[], false),
            tone(1500.0, 2.0, PEAK, &[], false),
        );
        let mut bytes = Vec::new();
        for (a, b) in l.iter().zip(&r) {
            bytes.extend_from_slice(&a.to_le_bytes());
            bytes.extend_from_slice(&b.to_le_bytes());
        }
        bytes.push(7); // a stray byte is dropped
        let pcm = Pcm::from_s16le(&bytes, R, 2);
        assert_eq!(pcm.frames(), l.len());
        assert!((pcm.seconds() - 2.0).abs() < 1e-9);
        assert_eq!(pcm.channel(0), l);
        assert_eq!(pcm.channel(1), r);
        assert!(pcm.channel(2).is_empty());
        let a = analyse(&pcm.channel(1), R);
        assert!((a.freq_hz - 1500.0).abs() < 1.0, "{}", a.freq_hz);
    }

    #[test]
    fn tone_dbfs_reads_the_level_of_one_frequency_and_not_its_neighbours() {
        // -6 dBFS peak is -9 dBFS RMS.
        let a = tone(500.0, 2.0, 0.5, &[], false);
        let b = tone(1500.0, 2.0, 0.25, &[], false);
        let mixed: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert!((tone_dbfs(&mixed, R, 500.0) + 9.03).abs() < 0.2);
        assert!((tone_dbfs(&mixed, R, 1500.0) + 15.05).abs() < 0.2);
        assert!(tone_dbfs(&mixed, R, 1000.0) < -60.0);
        assert!(tone_dbfs(&a, R, 1500.0) < -60.0);
    }
}
