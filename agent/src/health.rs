//! Per-stream health as a pure state machine: (state, input, now) -> (state, actions).
//!
//! Owns: the decisions of when a stream is running, stalled, silent or failed, and
//! when its capture pipeline is stopped and started again. Must not touch: clocks,
//! GStreamer or channels; the supervisor feeds it inputs and carries out the actions,
//! so every rule here is table-tested with made-up instants.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Thresholds that drive the state machine (from the `[health]` and `[restart]` config).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// No audio for this long means the capture is stalled.
    pub stall_timeout: Duration,
    /// RMS below this (on every channel) counts as silence.
    pub silence_threshold_dbfs: f64,
    /// Silence lasting this long raises the silent flag.
    pub silence_after: Duration,
    pub backoff: Backoff,
    /// Running this long without trouble resets the backoff.
    pub reset_after: Duration,
}

/// Where a stream's capture pipeline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A pipeline was started; no audio has arrived yet.
    Starting,
    /// Audio is flowing.
    Running,
    /// Audio stopped flowing; the pipeline was stopped and will be retried at the instant.
    Stalled { retry_at: Instant },
    /// The pipeline reported an error; it was stopped and will be retried at the instant.
    Failed { retry_at: Instant },
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stalled { .. } => "stalled",
            Phase::Failed { .. } => "failed",
        }
    }
}

/// What the supervisor must do to the media side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start { generation: u64 },
    Stop { generation: u64 },
}

/// A transition worth telling the operator about.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Running,
    Stalled { silent_for: Duration },
    Failed { reason: String },
    Retrying { attempt: u32, delay: Duration },
    Restarted { generation: u64 },
    SilenceBegan,
    SilenceEnded,
    BackoffReset,
}

/// What happened to a stream's capture pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A level reading: proof that audio flows. Values are dBFS, loudest channel.
    Level { peak_dbfs: f64, rms_dbfs: f64 },
    /// The pipeline failed (error message, end of stream, refused to start).
    Failure { reason: String },
    /// Time passed.
    Tick,
}

#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub actions: Vec<Action>,
    pub notes: Vec<Note>,
}

/// The health of one stream.
#[derive(Debug, Clone)]
pub struct StreamHealth {
    pub phase: Phase,
    /// Identifies the current pipeline; events from older ones are stale.
    pub generation: u64,
    /// Retries since the stream was last healthy for `reset_after`.
    pub attempt: u32,
    pub restarts: u64,
    pub stalls: u64,
    pub failures: u64,
    pub peak_dbfs: Option<f64>,
    pub rms_dbfs: Option<f64>,
    pub silent: bool,
    pub last_error: Option<String>,
    started_at: Instant,
    last_data: Option<Instant>,
    running_since: Option<Instant>,
    quiet_since: Option<Instant>,
}

impl StreamHealth {
    /// A new stream; its first pipeline must be started.
    pub fn new(now: Instant) -> (StreamHealth, Action) {
        let h = StreamHealth {
            phase: Phase::Starting,
            generation: 1,
            attempt: 0,
            restarts: 0,
            stalls: 0,
            failures: 0,
            peak_dbfs: None,
            rms_dbfs: None,
            silent: false,
            last_error: None,
            started_at: now,
            last_data: None,
            running_since: None,
            quiet_since: None,
        };
        (h, Action::Start { generation: 1 })
    }

    /// When this stream next needs a `Tick`, if it is waiting for something timed.
    pub fn next_deadline(&self, policy: &Policy) -> Instant {
        match self.phase {
            Phase::Starting => self.started_at + policy.stall_timeout,
            Phase::Running => self.last_data.unwrap_or(self.started_at) + policy.stall_timeout,
            Phase::Stalled { retry_at } | Phase::Failed { retry_at } => retry_at,
        }
    }

    pub fn step(&mut self, input: Input, now: Instant, policy: &Policy, jitter: f64) -> Step {
        let mut step = Step::default();
        match input {
            Input::Level {
                peak_dbfs,
                rms_dbfs,
            } => self.on_level(now, peak_dbfs, rms_dbfs, policy, &mut step),
            Input::Failure { reason } => {
                if matches!(self.phase, Phase::Starting | Phase::Running) {
                    self.failures += 1;
                    step.notes.push(Note::Failed {
                        reason: reason.clone(),
                    });
                    self.last_error = Some(reason);
                    let retry_at = self.schedule_retry(now, policy, jitter, &mut step);
                    self.phase = Phase::Failed { retry_at };
                }
            }
            Input::Tick => self.on_tick(now, policy, jitter, &mut step),
        }
        step
    }

    fn on_level(&mut self, now: Instant, peak: f64, rms: f64, policy: &Policy, step: &mut Step) {
        match self.phase {
            Phase::Starting => {
                self.phase = Phase::Running;
                self.running_since = Some(now);
                step.notes.push(Note::Running);
            }
            Phase::Running => {}
            // A late reading from a pipeline already stopped: not proof of anything.
            Phase::Stalled { .. } | Phase::Failed { .. } => return,
        }
        self.last_data = Some(now);
        self.peak_dbfs = Some(peak);
        self.rms_dbfs = Some(rms);
        if self.attempt > 0
            && self
                .running_since
                .is_some_and(|t| now.duration_since(t) >= policy.reset_after)
        {
            self.attempt = 0;
            step.notes.push(Note::BackoffReset);
        }
        if rms < policy.silence_threshold_dbfs {
            let since = *self.quiet_since.get_or_insert(now);
            if !self.silent && now.duration_since(since) >= policy.silence_after {
                self.silent = true;
                step.notes.push(Note::SilenceBegan);
            }
        } else {
            self.quiet_since = None;
            if self.silent {
                self.silent = false;
                step.notes.push(Note::SilenceEnded);
            }
        }
    }

    fn on_tick(&mut self, now: Instant, policy: &Policy, jitter: f64, step: &mut Step) {
        match self.phase {
            Phase::Starting | Phase::Running => {
                let since = self.last_data.unwrap_or(self.started_at);
                let quiet = now.saturating_duration_since(since);
                if quiet >= policy.stall_timeout {
                    self.stalls += 1;
                    self.last_error = Some(format!(
                        "no audio for {} ms (stall timeout {} ms)",
                        quiet.as_millis(),
                        policy.stall_timeout.as_millis()
                    ));
                    step.notes.push(Note::Stalled { silent_for: quiet });
                    let retry_at = self.schedule_retry(now, policy, jitter, step);
                    self.phase = Phase::Stalled { retry_at };
                }
            }
            Phase::Stalled { retry_at } | Phase::Failed { retry_at } => {
                if now >= retry_at {
                    let generation = self.begin_generation(now);
                    step.actions.push(Action::Start { generation });
                    step.notes.push(Note::Restarted { generation });
                }
            }
        }
    }

    /// An operator asked for a restart: stop the pipeline and start a new one now,
    /// without counting it as a failure or touching the backoff.
    pub fn restart_now(&mut self, now: Instant) -> Step {
        let old = self.generation;
        // Levels of the old pipeline say nothing about the new one.
        self.peak_dbfs = None;
        self.rms_dbfs = None;
        self.silent = false;
        let generation = self.begin_generation(now);
        Step {
            actions: vec![
                Action::Stop { generation: old },
                Action::Start { generation },
            ],
            notes: vec![Note::Restarted { generation }],
        }
    }

    /// A new pipeline generation starts now; returns its number.
    fn begin_generation(&mut self, now: Instant) -> u64 {
        self.generation += 1;
        self.restarts += 1;
        self.phase = Phase::Starting;
        self.started_at = now;
        self.running_since = None;
        self.last_data = None;
        self.quiet_since = None;
        self.generation
    }

    /// Stops the current pipeline and picks when to try again.
    fn schedule_retry(
        &mut self,
        now: Instant,
        policy: &Policy,
        jitter: f64,
        step: &mut Step,
    ) -> Instant {
        step.actions.push(Action::Stop {
            generation: self.generation,
        });
        let delay = policy.backoff.delay(self.attempt, jitter);
        step.notes.push(Note::Retrying {
            attempt: self.attempt + 1,
            delay,
        });
        self.attempt = self.attempt.saturating_add(1);
        self.running_since = None;
        // Levels from a stopped pipeline say nothing about the present.
        self.peak_dbfs = None;
        self.rms_dbfs = None;
        self.silent = false;
        now + delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            stall_timeout: Duration::from_secs(3),
            silence_threshold_dbfs: -60.0,
            silence_after: Duration::from_secs(10),
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            reset_after: Duration::from_secs(30),
        }
    }

    fn loud() -> Input {
        Input::Level {
            peak_dbfs: -6.0,
            rms_dbfs: -9.0,
        }
    }
    fn quiet() -> Input {
        Input::Level {
            peak_dbfs: -90.0,
            rms_dbfs: -95.0,
        }
    }
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_audio_makes_it_running() {
        let t0 = Instant::now();
        let (mut h, a) = StreamHealth::new(t0);
        assert_eq!(a, Action::Start { generation: 1 });
        let s = h.step(loud(), t0 + ms(40), &policy(), 0.5);
        assert_eq!(h.phase, Phase::Running);
        assert_eq!(s.notes, vec![Note::Running]);
        assert_eq!(h.rms_dbfs, Some(-9.0));
    }

    #[test]
    fn stall_is_reported_within_the_timeout_and_restarted_with_backoff() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        h.step(loud(), t0 + ms(100), &p, 0.0);
        // Just under the timeout: nothing.
        let s = h.step(Input::Tick, t0 + ms(3099), &p, 0.0);
        assert!(s.actions.is_empty());
        let s = h.step(Input::Tick, t0 + ms(3100), &p, 0.0);
        assert_eq!(s.actions, vec![Action::Stop { generation: 1 }]);
        assert!(matches!(h.phase, Phase::Stalled { .. }));
        assert_eq!(h.stalls, 1);
        // Jitter 0 -> first retry after 500 ms.
        let s = h.step(Input::Tick, t0 + ms(3599), &p, 0.0);
        assert!(s.actions.is_empty());
        let s = h.step(Input::Tick, t0 + ms(3600), &p, 0.0);
        assert_eq!(s.actions, vec![Action::Start { generation: 2 }]);
        assert_eq!(h.phase, Phase::Starting);
        assert_eq!(h.restarts, 1);
        // Audio returns: running again.
        h.step(loud(), t0 + ms(3700), &p, 0.0);
        assert_eq!(h.phase, Phase::Running);
    }

    #[test]
    fn a_start_that_never_delivers_counts_as_a_stall() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        let s = h.step(Input::Tick, t0 + ms(3000), &p, 1.0);
        assert_eq!(s.actions, vec![Action::Stop { generation: 1 }]);
        assert_eq!(h.next_deadline(&p), t0 + ms(4000));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let p = policy();
        let mut now = Instant::now();
        let (mut h, _) = StreamHealth::new(now);
        let mut delays = vec![];
        for _ in 0..9 {
            let s = h.step(
                Input::Failure {
                    reason: "boom".into(),
                },
                now,
                &p,
                1.0,
            );
            let retry_at = match h.phase {
                Phase::Failed { retry_at } => retry_at,
                other => panic!("{other:?}"),
            };
            assert_eq!(
                s.actions,
                vec![Action::Stop {
                    generation: h.generation
                }]
            );
            delays.push(retry_at - now);
            now = retry_at;
            let s = h.step(Input::Tick, now, &p, 1.0);
            assert_eq!(
                s.actions,
                vec![Action::Start {
                    generation: h.generation
                }]
            );
        }
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(h.failures, 9);
        assert_eq!(h.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn failure_while_waiting_is_ignored() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        let fail = || Input::Failure { reason: "x".into() };
        h.step(fail(), t0, &p, 0.0);
        let s = h.step(fail(), t0 + ms(1), &p, 0.0);
        assert!(s.actions.is_empty());
        assert_eq!(h.failures, 1);
    }

    #[test]
    fn healthy_period_resets_backoff() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        let fail = || Input::Failure { reason: "x".into() };
        h.step(fail(), t0, &p, 1.0);
        h.step(Input::Tick, t0 + ms(1000), &p, 1.0);
        h.step(loud(), t0 + ms(1100), &p, 1.0);
        assert_eq!(h.attempt, 1);
        // Keep feeding audio for 30 s.
        let mut t = t0 + ms(1100);
        let mut reset = false;
        while t < t0 + ms(31_200) {
            t += ms(250);
            reset |= h
                .step(loud(), t, &p, 1.0)
                .notes
                .contains(&Note::BackoffReset);
        }
        assert!(reset);
        assert_eq!(h.attempt, 0);
        // The next failure waits the initial delay again.
        h.step(fail(), t, &p, 1.0);
        assert_eq!(h.next_deadline(&p), t + ms(1000));
    }

    #[test]
    fn silence_is_a_flag_not_a_failure() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        let mut notes = vec![];
        let mut t = t0;
        for _ in 0..=40 {
            t += ms(250);
            notes.extend(h.step(quiet(), t, &p, 0.0).notes);
            notes.extend(h.step(Input::Tick, t, &p, 0.0).notes);
        }
        assert!(h.silent);
        assert_eq!(h.phase, Phase::Running);
        assert_eq!(notes, vec![Note::Running, Note::SilenceBegan]);
        let s = h.step(loud(), t + ms(250), &p, 0.0);
        assert_eq!(s.notes, vec![Note::SilenceEnded]);
        assert!(!h.silent);
    }

    #[test]
    fn short_quiet_spells_do_not_raise_the_flag() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        let mut t = t0;
        for i in 0..200 {
            t += ms(250);
            // 9.75 s quiet, then one loud reading, repeatedly.
            let input = if i % 40 == 39 { loud() } else { quiet() };
            h.step(input, t, &p, 0.0);
            assert!(!h.silent, "at reading {i}");
        }
    }

    #[test]
    fn an_asked_restart_replaces_the_pipeline_without_backoff() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        h.step(loud(), t0 + ms(100), &p, 0.0);
        let s = h.restart_now(t0 + ms(200));
        assert_eq!(
            s.actions,
            vec![
                Action::Stop { generation: 1 },
                Action::Start { generation: 2 }
            ]
        );
        assert_eq!(
            (h.phase, h.attempt, h.failures, h.restarts),
            (Phase::Starting, 0, 0, 1)
        );
        h.step(loud(), t0 + ms(300), &p, 0.0);
        assert_eq!(h.phase, Phase::Running);
    }

    #[test]
    fn late_levels_from_a_stopped_pipeline_are_ignored() {
        let p = policy();
        let t0 = Instant::now();
        let (mut h, _) = StreamHealth::new(t0);
        h.step(Input::Tick, t0 + ms(3000), &p, 0.0);
        let s = h.step(loud(), t0 + ms(3001), &p, 0.0);
        assert!(matches!(h.phase, Phase::Stalled { .. }));
        assert!(s.notes.is_empty());
        assert_eq!(h.peak_dbfs, None);
    }
}
