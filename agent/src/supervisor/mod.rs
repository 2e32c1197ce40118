//! The supervisor: one task that receives every request and report and feeds
//! them, in order, to the pure [`machine::Machine`], then carries out the
//! effects it returns. This file is the shell; the decisions are in
//! `machine.rs` (and the per-stream rules in `health.rs`).
//!
//! Owns: the machine (all stream and device state), the published
//! [`Snapshot`], and the tasks it starts (card-id pins, config reads). Nothing
//! here blocks the runtime: files are read and written on blocking threads
//! (config reads and pins as owned tasks, the name ledger by [`store::Writer`]
//! on its own thread), and media commands are queued.
//!
//! Queues, each with its policy: requests arrive on a bounded channel (their
//! senders wait for room); the watchdog's probes on their own small channel
//! (a full one is a missed probe); media reports through [`crate::media::Inbox`]
//! (levels and client counts coalesced, failures bounded).

pub mod machine;
pub mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::devices::naming::Ledger;
use crate::devices::scan::Card;
use crate::devices::watch::DeviceEvent;
use crate::media::{Inbox, MediaEvent, MediaHandle};
use crate::state::{BusStatus, DeadmanStatus, ReloadReport, Snapshot};
use machine::{Answer, Effect, Input, Machine, TICK};

/// Requests queued for the supervisor before their senders wait.
pub const EVENT_QUEUE: usize = 64;

/// Everything the supervisor is asked to do, besides media reports and probes.
#[derive(Debug)]
pub enum Event {
    Device(DeviceEvent),
    /// The cards present at start-up, named together (in port order).
    Coldplug(Vec<Card>),
    /// Re-read the config file and apply the difference; the report goes to
    /// `reply` when one is given.
    Reload {
        reply: Option<oneshot::Sender<ReloadReport>>,
    },
    /// Restart one stream's capture; the reply says whether the stream exists.
    RestartStream {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    /// Stop every stream and return.
    Shutdown,
    /// The deadman's state changed (shown with the snapshot).
    Deadman(DeadmanStatus),
    /// The D-Bus connection's state changed (shown with the snapshot).
    Bus(BusStatus),
    /// Test hook (`--test-hooks`, SIGUSR2): the loop stops answering, as a
    /// deadlocked agent would, so tests can watch the watchdog act.
    Wedge,
}

/// A watchdog probe: answered at once by a loop that is alive.
pub type Probe = oneshot::Sender<()>;

/// What the supervisor's blocking helpers hand back.
enum Done {
    Pinned {
        card: u32,
        id: String,
        result: Result<(), String>,
    },
    Loaded {
        config: Result<Arc<Config>, String>,
        reply: Option<oneshot::Sender<ReloadReport>>,
    },
}

pub struct Supervisor {
    machine: Machine,
    media: MediaHandle,
    inbox: Inbox,
    snapshot: watch::Sender<Snapshot>,
    last_summary: String,
    /// The sysfs root (`/sys`), for pinning card ids and seeing cards gone.
    sysfs: PathBuf,
    ledger: store::Writer,
    /// Pins and config reads under way (owned: joined or aborted on return).
    work: JoinSet<Done>,
    /// What the recorders and the janitor last said (shown with the snapshot;
    /// the machine has no part in recording).
    recording: Option<crate::state::RecordingStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the media thread ended unexpectedly")]
    MediaThreadEnded,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Supervisor {
    pub fn new(
        config: Arc<Config>,
        media: MediaHandle,
        inbox: Inbox,
        ledger: Ledger,
        sysfs: PathBuf,
        ledger_writer: store::Writer,
    ) -> (Supervisor, watch::Receiver<Snapshot>) {
        let (snapshot, rx) = watch::channel(Snapshot::default());
        let sup = Supervisor {
            machine: Machine::new(config, ledger, fastrand::u64(..)),
            media,
            inbox,
            snapshot,
            last_summary: String::new(),
            sysfs,
            ledger: ledger_writer,
            work: JoinSet::new(),
            recording: None,
        };
        (sup, rx)
    }

    /// Feeds one input to the machine and carries out what it decided.
    fn apply(&mut self, input: Input) -> Answer {
        self.machine.unix_now = unix_now();
        let out = self.machine.handle(input, Instant::now());
        for effect in out.effects {
            self.carry_out(effect);
        }
        out.answer
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Mount(spec) => self.media.mount(spec),
            Effect::Start {
                spec,
                generation,
                device,
                tap,
            } => self.media.start(spec, generation, device, tap),
            Effect::Stop { stream, generation } => self.media.stop(&stream, generation),
            Effect::Unmount(stream) => self.media.unmount(&stream),
            Effect::Record { stream, on } => self.media.record(&stream, on),
            Effect::SaveLedger(ledger) => self.ledger.save(ledger),
            Effect::PinCardId { card, id } => {
                let path = self.sysfs.join(format!("class/sound/card{card}/id"));
                self.work.spawn_blocking(move || {
                    let result = std::fs::write(&path, &id).map_err(|e| e.to_string());
                    Done::Pinned { card, id, result }
                });
            }
        }
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Pinned { card, id, result } => {
                self.apply(Input::Pinned { card, id, result });
            }
            Done::Loaded { config, reply } => {
                crate::notify::reloading();
                let report = match self.apply(Input::Reload(config)) {
                    Answer::Reload(r) => r,
                    _ => ReloadReport::default(),
                };
                if let Some(why) = &report.refused {
                    tracing::error!(error = %why, "reload refused");
                } else {
                    tracing::info!(
                        added = report.added.len(),
                        removed = report.removed.len(),
                        changed = report.changed.len(),
                        needs_restart = ?report.needs_restart,
                        report = %report.summary(),
                        "configuration reloaded"
                    );
                }
                self.publish();
                crate::notify::ready(&self.snapshot.borrow().status_line());
                if let Some(r) = reply {
                    let _ = r.send(report);
                }
            }
        }
    }

    /// Reads the config file on a blocking thread; the answer comes back as
    /// [`Done::Loaded`].
    fn load_config(&mut self, reply: Option<oneshot::Sender<ReloadReport>>) {
        let path = self.machine.config().path.clone();
        self.work.spawn_blocking(move || Done::Loaded {
            config: Config::load(&path).map(Arc::new).map_err(|e| e.to_string()),
            reply,
        });
    }

    async fn media_report(&mut self, ev: MediaEvent) {
        let input = match ev {
            MediaEvent::Recorder { stream, status } => {
                let r = self.recording.get_or_insert_with(Default::default);
                match status {
                    Some(s) => {
                        r.streams.insert(stream, *s);
                    }
                    None => {
                        r.streams.remove(&stream);
                    }
                }
                return;
            }
            MediaEvent::RecordingDisk(disk) => {
                self.recording.get_or_insert_with(Default::default).disk = *disk;
                return;
            }
            MediaEvent::Level {
                stream,
                generation,
                peak_dbfs,
                rms_dbfs,
                bytes_sent,
                group,
            } => Input::Level {
                stream,
                generation,
                peak_dbfs,
                rms_dbfs,
                bytes_sent,
                group,
            },
            MediaEvent::Clients { stream, count } => Input::Clients { stream, count },
            MediaEvent::Failed {
                stream,
                generation,
                reason,
            } => {
                let card_present = match self.machine.card_of(&stream) {
                    Some(index) => {
                        let card = self.sysfs.join(format!("class/sound/card{index}"));
                        tokio::fs::try_exists(card).await.unwrap_or(true)
                    }
                    None => true,
                };
                Input::Failed {
                    stream,
                    generation,
                    reason,
                    card_present,
                }
            }
        };
        self.apply(input);
    }

    fn publish(&mut self) {
        let mut snap = self.machine.snapshot();
        snap.recording = self.recording.as_ref().map(|r| {
            let mut r = r.clone();
            for (name, s) in &mut r.streams {
                s.on_disk = r.disk.streams.get(name).cloned().unwrap_or_default();
            }
            r
        });
        let summary = snap.summary();
        if summary != self.last_summary {
            tracing::info!(status = %summary, "status");
            self.last_summary = summary;
        }
        self.snapshot.send_if_modified(|old| {
            if *old == snap {
                false
            } else {
                *old = snap;
                true
            }
        });
    }

    /// Runs until `Shutdown` arrives or the media thread dies (an error: the daemon
    /// must exit non-zero so systemd restarts it). Returns once the ledger
    /// writer has written what it was given.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut probes: mpsc::Receiver<Probe>,
    ) -> Result<(), SupervisorError> {
        self.apply(Input::Start);
        self.publish();
        let wake = self.inbox.waker();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                // Requests, in order.
                ev = events.recv() => match ev {
                    Some(Event::Device(DeviceEvent::Added(card))) => { self.apply(Input::Added(*card)); }
                    Some(Event::Device(DeviceEvent::Removed { index })) => { self.apply(Input::Removed { index }); }
                    Some(Event::Coldplug(cards)) => { self.apply(Input::Coldplug(cards)); }
                    Some(Event::Reload { reply }) => self.load_config(reply),
                    Some(Event::RestartStream { name, reply }) => {
                        let found = matches!(self.apply(Input::Restart { name }), Answer::Restart(true));
                        let _ = reply.send(found);
                    }
                    Some(Event::Shutdown) | None => break Ok(()),
                    Some(Event::Deadman(d)) => { self.apply(Input::Deadman(d)); }
                    Some(Event::Bus(b)) => { self.apply(Input::Bus(b)); }
                    Some(Event::Wedge) => {
                        tracing::warn!("test hook: the supervisor stops answering");
                        std::future::pending::<()>().await;
                    }
                },
                // The watchdog's probe: nothing changes, nothing to publish.
                Some(p) = probes.recv() => {
                    let _ = p.send(());
                    continue;
                }
                // A pin or a config read finished.
                Some(done) = self.work.join_next(), if !self.work.is_empty() => match done {
                    Ok(d) => self.done(d),
                    Err(e) => tracing::error!(error = %e, "a supervisor helper task failed"),
                },
                failure = self.inbox.failure() => match failure {
                    Some(ev) => self.media_report(ev).await,
                    None => break Err(SupervisorError::MediaThreadEnded),
                },
                // Client counts changed.
                () = wake.notified() => {
                    for ev in self.inbox.take(false) {
                        self.media_report(ev).await;
                    }
                }
                // Levels (coalesced), then stall deadlines and retry times.
                _ = ticker.tick() => {
                    for ev in self.inbox.take(true) {
                        self.media_report(ev).await;
                    }
                    self.apply(Input::Tick);
                }
                // The media thread is gone: nothing here can work any more.
                () = self.media.closed() => break Err(SupervisorError::MediaThreadEnded),
            }
            self.publish();
        };
        self.work.shutdown().await;
        self.ledger.close().await;
        result
    }
}
