//! The heart of a group, with no GStreamer in it: members' audio in, one
//! group buffer out per tick, every member kept on the group's clock.
//!
//! Each member's capture pipeline hands its raw audio (32-bit float, interleaved,
//! at [`GROUP_RATE`], the member's channel count for the group) to its
//! [`Input`]. The group pipeline's own live source ticks on the system clock
//! and asks [`Mixer::render`] for each buffer. Separate microphones run on
//! separate crystals, tens of ppm apart (the tests use 208 ppm): left alone, a
//! member's queue would grow or drain for ever. So each input is read through a
//! resampler whose ratio a PI controller steers to hold the queue's low point
//! at its target ([`TARGET`] to start with): latency stays bounded for as long
//! as it runs, and nothing is
//! dropped or repeated while the drift is within [`MAX_PPM`]. Beyond that (a
//! member far off its nominal rate, or a stall), the queue is cut back to the
//! target (a "resync", counted) or runs dry (an "underrun": silence until it has
//! refilled, counted).
//!
//! The controller looks at the lowest the queue got in each second (measured
//! after each read), not at the queue itself: audio arrives in chunks (a
//! capture period, 10-21 ms) at a phase of their own against the group's 20 ms
//! ticks, so the queue seen at a tick jumps by a chunk for no reason but that
//! phase; its low point over a second does not. Updated once a second.
//!
//! Interpolation is 4-point cubic Hermite: for the ratios this runs at
//! (1 +- 0.001) it is within 0.1 dB to 10 kHz at 48 kHz, and its cost is a few
//! multiplications per sample.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{GROUP_RATE, GroupMode};
use crate::state::{GroupMemberStatus, GroupStatus};

/// The low point each input's queue is held at, in frames (40 ms): what is
/// left when the group has taken its buffer, just before the member's next
/// chunk. The queue's mean is this plus about half a chunk and half a tick.
pub const TARGET: usize = (GROUP_RATE as usize) * 40 / 1000;
/// Each underrun raises a member's target by this much (20 ms), up to
/// [`MAX_TARGET`]: a member whose audio comes in bursts (a busy or emulated
/// machine) gets the margin it needs, one that never runs dry keeps 40 ms.
const TARGET_STEP: usize = (GROUP_RATE as usize) * 20 / 1000;
/// The most a member's target grows to (200 ms).
pub const MAX_TARGET: usize = (GROUP_RATE as usize) / 5;
/// A queue longer than this (frames, 500 ms) is cut back to the target.
pub const MAX_FILL: usize = (GROUP_RATE as usize) / 2;
/// The most the controller bends a member's rate, in parts per million.
pub const MAX_PPM: f64 = 1000.0;
/// Proportional gain, per second of queue error.
const KP: f64 = 0.05;
/// Integral gain: critically damped with [`KP`].
const KI: f64 = KP * KP / 4.0;
/// Frames per controller update (one second).
const WINDOW: usize = GROUP_RATE as usize;
/// Ticks without new audio before a member counts as absent (about 200 ms).
const ABSENT_TICKS: u32 = 10;

/// One member's queue and its rate controller.
#[derive(Debug)]
pub struct Input {
    channels: usize,
    ring: VecDeque<f32>,
    /// The low point the controller holds the queue at, in frames.
    target: usize,
    /// Read position in frames from the front of `ring` (at least 1: the
    /// interpolator looks one frame back).
    pos: f64,
    ratio: f64,
    integral: f64,
    /// This window: lowest queue, sum of queues, reads, frames read.
    low: f64,
    sum: f64,
    reads: u32,
    window_frames: usize,
    /// The last full window's low point and mean, in frames.
    last_low: f64,
    last_mean: f64,
    primed: bool,
    pushed: bool,
    idle_ticks: u32,
    underruns: u64,
    resyncs: u64,
}

impl Input {
    pub fn new(channels: usize) -> Input {
        Input {
            channels: channels.max(1),
            ring: VecDeque::new(),
            target: TARGET,
            pos: 1.0,
            ratio: 1.0,
            integral: 0.0,
            low: f64::INFINITY,
            sum: 0.0,
            reads: 0,
            window_frames: 0,
            last_low: f64::NAN,
            last_mean: f64::NAN,
            primed: false,
            pushed: false,
            idle_ticks: ABSENT_TICKS,
            underruns: 0,
            resyncs: 0,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Appends interleaved samples (a trailing partial frame is ignored).
    pub fn push(&mut self, samples: &[f32]) {
        let whole = samples.len() - samples.len() % self.channels;
        self.ring.extend(&samples[..whole]);
        self.pushed = true;
        self.idle_ticks = 0;
        if self.frames() > MAX_FILL {
            self.cut_to(self.target);
            self.resyncs += 1;
        }
    }

    /// The member's pipeline stopped: forget its audio, keep its counters.
    pub fn reset(&mut self) {
        self.ring.clear();
        self.pos = 1.0;
        self.primed = false;
        self.idle_ticks = ABSENT_TICKS;
    }

    fn frames(&self) -> usize {
        self.ring.len() / self.channels
    }

    /// Frames queued ahead of the read position.
    fn fill(&self) -> f64 {
        self.frames() as f64 - self.pos
    }

    fn cut_to(&mut self, frames: usize) {
        let drop = self.frames().saturating_sub(frames + 1);
        self.ring.drain(..drop * self.channels);
        self.pos = 1.0;
    }

    /// Present: audio arrived recently and the queue is running. (The queue is
    /// measured after each read: the target is what is left when the group has
    /// taken its buffer.)
    pub fn present(&self) -> bool {
        self.primed && self.idle_ticks < ABSENT_TICKS
    }

    /// Writes `frames` frames of this member into `out` (interleaved,
    /// `out_channels` wide) through `place`, which gets (frame, member channel,
    /// sample). Silence (nothing written) while absent or refilling.
    fn read(&mut self, frames: usize, mut place: impl FnMut(usize, usize, f32)) {
        if !self.pushed {
            self.idle_ticks = self.idle_ticks.saturating_add(1);
        }
        self.pushed = false;
        if !self.primed {
            // Start so that the queue left after this read is the target.
            if self.frames() < self.target + frames + 2 {
                return;
            }
            self.cut_to(self.target + frames);
            self.primed = true;
            self.integral = 0.0;
            self.ratio = 1.0;
            self.low = f64::INFINITY;
            self.sum = 0.0;
            self.reads = 0;
            self.window_frames = 0;
        }
        let c = self.channels;
        let mut written = frames;
        for k in 0..frames {
            let t = self.pos + k as f64 * self.ratio;
            let i = t as usize;
            if i + 2 >= self.frames() {
                written = k;
                break;
            }
            let x = (t - i as f64) as f32;
            for ch in 0..c {
                let at = |j: usize| self.ring[j * c + ch];
                place(k, ch, hermite(at(i - 1), at(i), at(i + 1), at(i + 2), x));
            }
        }
        self.pos += written as f64 * self.ratio;
        let drop = (self.pos as usize).saturating_sub(1).min(self.frames());
        self.ring.drain(..drop * c);
        self.pos -= drop as f64;
        if written < frames {
            // Ran dry: silence until the queue is back at its target, which
            // grows so that the same burst does not empty it again.
            self.underruns += 1;
            self.target = (self.target + TARGET_STEP).min(MAX_TARGET);
            self.primed = false;
            return;
        }
        self.steer(frames);
    }

    /// The PI controller, once a window: a low point above target is read
    /// faster, below slower.
    fn steer(&mut self, frames: usize) {
        let fill = self.fill();
        self.low = self.low.min(fill);
        self.sum += fill;
        self.reads += 1;
        self.window_frames += frames;
        if self.window_frames < WINDOW {
            return;
        }
        let rate = f64::from(GROUP_RATE);
        let dt = self.window_frames as f64 / rate;
        let error = (self.low - self.target as f64) / rate;
        let limit = MAX_PPM * 1e-6;
        self.integral = (self.integral + KI * error * dt).clamp(-limit, limit);
        self.ratio = 1.0 + (KP * error + self.integral).clamp(-limit, limit);
        self.last_low = self.low;
        self.last_mean = self.sum / f64::from(self.reads.max(1));
        self.low = f64::INFINITY;
        self.sum = 0.0;
        self.reads = 0;
        self.window_frames = 0;
    }

    fn status(&self, name: &str, first_channel: u32) -> GroupMemberStatus {
        GroupMemberStatus {
            name: name.to_string(),
            present: self.present(),
            first_channel,
            channels: self.channels as u32,
            latency_ms: (self.present() && self.last_mean.is_finite())
                .then(|| self.last_mean * 1000.0 / f64::from(GROUP_RATE)),
            low_ms: (self.present() && self.last_low.is_finite())
                .then(|| self.last_low * 1000.0 / f64::from(GROUP_RATE)),
            rate_ppm: (self.ratio - 1.0) * 1e6,
            target_ms: self.target as f64 * 1000.0 / f64::from(GROUP_RATE),
            underruns: self.underruns,
            resyncs: self.resyncs,
        }
    }
}

/// Catmull-Rom through y0..y3, at x in [0, 1) between y1 and y2.
fn hermite(y0: f32, y1: f32, y2: f32, y3: f32, x: f32) -> f32 {
    let c1 = 0.5 * (y2 - y0);
    let c2 = y0 - 2.5 * y1 + 2.0 * y2 - 0.5 * y3;
    let c3 = 0.5 * (y3 - y0) + 1.5 * (y1 - y2);
    ((c3 * x + c2) * x + c1) * x + y1
}

/// An input shared between a member's streaming thread and the group's.
pub type SharedInput = Arc<Mutex<Input>>;

pub fn lock(input: &SharedInput) -> MutexGuard<'_, Input> {
    // Every update leaves `Input` whole; a panic elsewhere cannot tear it.
    input.lock().unwrap_or_else(|p| p.into_inner())
}

struct Slot {
    name: String,
    gain: f32,
    input: SharedInput,
}

/// A group: its members' inputs and how they are combined.
pub struct Mixer {
    mode: GroupMode,
    out_channels: usize,
    /// Mix: divide the sum by the listed member count (`None`: by the members
    /// present, for `members = "all"`).
    fixed_members: Option<usize>,
    slots: Vec<Slot>,
    clipped: u64,
    peak: Vec<f32>,
    sum_sq: Vec<f64>,
    level_frames: u64,
}

impl Mixer {
    /// `members`: name and linear gain, in order. Merge: each brings
    /// `member_channels`; mix: each is read as `member_channels` (the group's).
    pub fn new(
        mode: GroupMode,
        member_channels: usize,
        members: &[(String, f32)],
        fixed: bool,
    ) -> Mixer {
        let out_channels = match mode {
            GroupMode::Merge => member_channels * members.len(),
            GroupMode::Mix => member_channels,
        };
        let mut m = Mixer {
            mode,
            out_channels: out_channels.max(1),
            fixed_members: fixed.then_some(members.len().max(1)),
            slots: vec![],
            clipped: 0,
            peak: vec![0.0; out_channels.max(1)],
            sum_sq: vec![0.0; out_channels.max(1)],
            level_frames: 0,
        };
        for (name, gain) in members {
            m.add(name, *gain, member_channels);
        }
        m
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// The input of `name`, added if it is not there (members = "all").
    pub fn add(&mut self, name: &str, gain: f32, channels: usize) -> SharedInput {
        if let Some(s) = self.slots.iter().find(|s| s.name == name) {
            return s.input.clone();
        }
        let input = Arc::new(Mutex::new(Input::new(channels)));
        self.slots.push(Slot {
            name: name.to_string(),
            gain,
            input: input.clone(),
        });
        input
    }

    pub fn input(&self, name: &str) -> Option<SharedInput> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.input.clone())
    }

    /// Removes a dynamic member (members = "all"); listed members stay.
    pub fn remove(&mut self, name: &str) {
        if self.fixed_members.is_none() {
            self.slots.retain(|s| s.name != name);
        }
    }

    /// Fills `out` (interleaved, [`Mixer::out_channels`] wide) with the next
    /// frames of the group.
    pub fn render(&mut self, out: &mut [f32]) {
        out.fill(0.0);
        let oc = self.out_channels;
        let frames = out.len() / oc;
        let present = self
            .slots
            .iter()
            .filter(|s| lock(&s.input).present())
            .count();
        let scale = 1.0 / self.fixed_members.unwrap_or(present.max(1)) as f32;
        let mut offset = 0;
        for s in &self.slots {
            let mut input = lock(&s.input);
            let c = input.channels();
            match self.mode {
                GroupMode::Merge => {
                    input.read(frames, |k, ch, x| out[k * oc + offset + ch] = x);
                    offset += c;
                }
                GroupMode::Mix => {
                    let g = s.gain * scale;
                    input.read(frames, |k, ch, x| {
                        if ch < oc {
                            out[k * oc + ch] += g * x;
                        }
                    });
                }
            }
        }
        for (i, x) in out.iter_mut().enumerate() {
            if x.abs() > 1.0 {
                self.clipped += 1;
                *x = x.clamp(-1.0, 1.0);
            }
            let ch = i % oc;
            self.peak[ch] = self.peak[ch].max(x.abs());
            self.sum_sq[ch] += f64::from(*x) * f64::from(*x);
        }
        self.level_frames += frames as u64;
    }

    /// What the group looks like now; per-channel levels since the last call.
    pub fn status(&mut self) -> GroupStatus {
        let db = |x: f64| if x > 1e-10 { 20.0 * x.log10() } else { -200.0 };
        let n = self.level_frames.max(1) as f64;
        let peak_dbfs = self.peak.iter().map(|p| db(f64::from(*p))).collect();
        let rms_dbfs = self.sum_sq.iter().map(|s| db((s / n).sqrt())).collect();
        self.peak.iter_mut().for_each(|p| *p = 0.0);
        self.sum_sq.iter_mut().for_each(|s| *s = 0.0);
        self.level_frames = 0;
        let mut first = 0;
        let members = self
            .slots
            .iter()
            .map(|s| {
                let input = lock(&s.input);
                let st = input.status(&s.name, first);
                if self.mode == GroupMode::Merge {
                    first += input.channels() as u32;
                }
                st
            })
            .collect();
        GroupStatus {
            mode: self.mode.as_str(),
            channels: self.out_channels as u32,
            members,
            peak_dbfs,
            rms_dbfs,
            clipped_samples: self.clipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: usize = 960; // 20 ms at 48 kHz

    /// A member source writing a sine at `rate` Hz (its own crystal) in chunks
    /// of `chunk_ms`, as time passes on the group's clock.
    struct Writer {
        rate: f64,
        freq: f64,
        amp: f32,
        channels: usize,
        written: u64,
        chunk_frames: f64,
        owed: f64,
    }

    impl Writer {
        fn new(rate: f64, freq: f64, channels: usize) -> Writer {
            Writer {
                rate,
                freq,
                amp: 0.5,
                channels,
                written: 0,
                chunk_frames: rate / 100.0,
                owed: 0.0,
            }
        }

        /// Writes what `secs` of group time produce, in whole chunks.
        fn advance(&mut self, input: &SharedInput, secs: f64) {
            self.owed += secs * self.rate;
            while self.owed >= self.chunk_frames {
                let n = self.chunk_frames as usize;
                let mut buf = Vec::with_capacity(n * self.channels);
                for k in 0..n {
                    // The writer's own timeline: frame / nominal rate.
                    let t = (self.written + k as u64) as f64 / f64::from(GROUP_RATE);
                    let x = self.amp * (2.0 * std::f64::consts::PI * self.freq * t).sin() as f32;
                    buf.extend(std::iter::repeat_n(x, self.channels));
                }
                lock(input).push(&buf);
                self.written += n as u64;
                self.owed -= n as f64;
            }
        }
    }

    fn mixer(mode: GroupMode, channels: usize, names: &[&str]) -> Mixer {
        let members: Vec<(String, f32)> = names.iter().map(|n| (n.to_string(), 1.0)).collect();
        Mixer::new(mode, channels, &members, true)
    }

    /// Runs `secs` of group time; returns the output.
    fn run(m: &mut Mixer, writers: &mut [(&str, &mut Writer)], secs: f64) -> Vec<f32> {
        let ticks = (secs * f64::from(GROUP_RATE) / TICK as f64) as usize;
        let mut all = Vec::with_capacity(ticks * TICK * m.out_channels());
        let mut buf = vec![0.0; TICK * m.out_channels()];
        for _ in 0..ticks {
            for (name, w) in writers.iter_mut() {
                let input = m.input(name).unwrap();
                w.advance(&input, TICK as f64 / f64::from(GROUP_RATE));
            }
            m.render(&mut buf);
            all.extend_from_slice(&buf);
        }
        all
    }

    fn channel(out: &[f32], oc: usize, ch: usize) -> Vec<f32> {
        out.iter().skip(ch).step_by(oc).copied().collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    /// Largest step between neighbouring samples: a sine of amplitude `a` at
    /// `f` Hz never steps more than 2 pi f a / rate; a dropped or repeated
    /// chunk does.
    fn max_step(x: &[f32]) -> f32 {
        x.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn merge_puts_each_member_on_its_own_channels_in_order() {
        let mut m = mixer(GroupMode::Merge, 1, &["a", "b", "c"]);
        let (mut a, mut b, mut c) = (
            Writer::new(48_000.0, 300.0, 1),
            Writer::new(48_000.0, 1000.0, 1),
            Writer::new(48_000.0, 3000.0, 1),
        );
        let out = run(
            &mut m,
            &mut [("a", &mut a), ("b", &mut b), ("c", &mut c)],
            2.0,
        );
        let tail = &out[out.len() / 2..];
        for ch in 0..3 {
            let x = channel(tail, 3, ch);
            // Amplitude 0.5: RMS 0.354, whichever member it is...
            assert!((rms(&x) - 0.3536).abs() < 0.01, "channel {ch}: {}", rms(&x));
            // ...and the steps say which frequency it carries.
            let step = max_step(&x);
            let want = [300.0, 1000.0, 3000.0][ch] * 2.0 * std::f32::consts::PI * 0.5 / 48_000.0;
            assert!(
                (step - want).abs() < want * 0.05,
                "channel {ch}: step {step}, want {want}"
            );
        }
        let st = m.status();
        assert_eq!(st.channels, 3);
        assert_eq!(
            st.members
                .iter()
                .map(|m| (m.first_channel, m.present))
                .collect::<Vec<_>>(),
            [(0, true), (1, true), (2, true)]
        );
    }

    #[test]
    fn mix_sums_at_one_over_n_with_member_gains_and_never_clips() {
        let members = vec![("a".to_string(), 1.0), ("b".to_string(), 0.5)];
        let mut m = Mixer::new(GroupMode::Mix, 2, &members, true);
        let (mut a, mut b) = (
            Writer::new(48_000.0, 440.0, 2),
            Writer::new(48_000.0, 440.0, 2),
        );
        b.amp = 1.0;
        let out = run(&mut m, &mut [("a", &mut a), ("b", &mut b)], 1.0);
        let tail = &out[out.len() / 2..];
        // In phase: (0.5 * 1 + 1.0 * 0.5) / 2 = 0.5 peak on both channels.
        for ch in 0..2 {
            let peak = channel(tail, 2, ch)
                .iter()
                .fold(0.0f32, |p, x| p.max(x.abs()));
            assert!((peak - 0.5).abs() < 0.01, "channel {ch}: peak {peak}");
        }
        assert_eq!(m.status().clipped_samples, 0);
        // With a member gain of +20 dB the sum clips; it is clamped and counted.
        let mut loud = Mixer::new(GroupMode::Mix, 1, &[("a".to_string(), 10.0)], true);
        let mut w = Writer::new(48_000.0, 440.0, 1);
        let out = run(&mut loud, &mut [("a", &mut w)], 0.5);
        assert!(out.iter().all(|x| x.abs() <= 1.0));
        assert!(loud.status().clipped_samples > 0);
    }

    #[test]
    fn an_absent_member_is_silence_on_its_channels_and_comes_back() {
        let mut m = mixer(GroupMode::Merge, 1, &["a", "b"]);
        let (mut a, mut b) = (
            Writer::new(48_000.0, 500.0, 1),
            Writer::new(48_000.0, 700.0, 1),
        );
        run(&mut m, &mut [("a", &mut a), ("b", &mut b)], 1.0);
        // b unplugged: its pipeline stops, a goes on.
        lock(&m.input("b").unwrap()).reset();
        let out = run(&mut m, &mut [("a", &mut a)], 1.0);
        assert!(rms(&channel(&out, 2, 1)) == 0.0, "b's channel is silent");
        let a_ch = channel(&out, 2, 0);
        assert!((rms(&a_ch) - 0.3536).abs() < 0.01);
        assert!(max_step(&a_ch) < 0.05, "a is undisturbed");
        assert!(!m.status().members[1].present);
        // b back: after one target's worth of refill, its channel carries it again.
        let out = run(&mut m, &mut [("a", &mut a), ("b", &mut b)], 1.0);
        let b_ch = channel(&out[out.len() / 2..], 2, 1);
        assert!((rms(&b_ch) - 0.3536).abs() < 0.01);
        assert!(
            max_step(&channel(&out, 2, 0)) < 0.05,
            "a is still undisturbed"
        );
        assert!(m.status().members[1].present);
    }

    #[test]
    fn members_208_ppm_apart_for_ten_minutes_stay_within_the_bound_without_a_glitch() {
        let mut m = mixer(GroupMode::Merge, 1, &["a", "b"]);
        let (mut a, mut b) = (
            Writer::new(48_000.0, 200.0, 1),
            Writer::new(48_010.0, 200.0, 1),
        );
        let mut worst = [0.0f64; 2];
        let mut step = 0.0f32;
        let mut ppm = vec![];
        for second in 0..600 {
            let out = run(&mut m, &mut [("a", &mut a), ("b", &mut b)], 1.0);
            let st = m.status();
            if second >= 60 {
                for (i, mem) in st.members.iter().enumerate() {
                    let err = (mem.low_ms.unwrap() - 40.0).abs();
                    worst[i] = worst[i].max(err);
                }
                ppm.push(st.members[1].rate_ppm);
            }
            if second > 0 {
                step = step.max(max_step(&channel(&out, 2, 1)));
            }
        }
        let st = m.status();
        let mean_ppm = ppm.iter().sum::<f64>() / ppm.len() as f64;
        println!(
            "queue low point 40 ms, worst error after the first minute {worst:.1?} ms; b read at {mean_ppm:.1} ppm on average"
        );
        for mem in &st.members {
            assert_eq!((mem.underruns, mem.resyncs), (0, 0), "{}", mem.name);
        }
        // Audio arrives in 10 ms chunks here: the queue seen at a tick moves by
        // one chunk whenever the fast member's extra chunk lands, so the bound is
        // a chunk and a little.
        assert!(worst[0] < 12.0 && worst[1] < 12.0, "{worst:?}");
        // b's crystal is 208 ppm fast: it is read 208 ppm faster.
        assert!((mean_ppm - 208.3).abs() < 10.0, "{mean_ppm}");
        // 200 Hz at 0.5: steps of at most 0.0131; a slip of one frame would be seen.
        assert!(step < 0.014, "largest step {step}");
    }

    #[test]
    fn a_member_that_runs_dry_gets_a_deeper_queue_and_then_does_not() {
        let mut m = mixer(GroupMode::Merge, 1, &["a"]);
        let mut w = Writer::new(48_000.0, 200.0, 1);
        run(&mut m, &mut [("a", &mut w)], 5.0);
        // Bursts: nothing for 100 ms, then all of it at once, again and again.
        let input = m.input("a").unwrap();
        let mut buf = vec![0.0; TICK];
        for _ in 0..40 {
            for _ in 0..5 {
                m.render(&mut buf);
            }
            w.advance(&input, 0.1);
        }
        let st = m.status();
        let first = st.members[0].underruns;
        assert!(first > 0, "bursts of 100 ms must empty a 40 ms queue");
        assert!(
            st.members[0].target_ms >= 100.0,
            "{}",
            st.members[0].target_ms
        );
        for _ in 0..100 {
            for _ in 0..5 {
                m.render(&mut buf);
            }
            w.advance(&input, 0.1);
        }
        let st = m.status();
        assert_eq!(
            st.members[0].underruns, first,
            "the deeper queue rides the bursts out"
        );
        assert!(st.members[0].target_ms <= 200.0);
    }

    #[test]
    fn a_member_far_off_its_rate_is_cut_back_not_left_to_grow() {
        let mut m = mixer(GroupMode::Merge, 1, &["a"]);
        let mut a = Writer::new(48_480.0, 200.0, 1); // 1 % fast: beyond MAX_PPM
        run(&mut m, &mut [("a", &mut a)], 120.0);
        let st = m.status();
        assert!(st.members[0].resyncs > 0);
        assert!(st.members[0].latency_ms.unwrap() <= 500.0);
        assert!((st.members[0].rate_ppm - MAX_PPM).abs() < 1.0);
    }
}
