//! The supervisor: one task that owns all stream state and receives every event on
//! one channel (media reports, reload and shutdown requests, timer ticks).
//!
//! Owns: the set of streams, their health, and the published [`Snapshot`]. Must not
//! touch: GStreamer (it sends commands through [`MediaHandle`]) or files other than
//! the config on reload. Decisions are made by the pure state machine in
//! `health.rs`; this file only routes events to it and carries out its actions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::config::{Config, StreamSpec};
use crate::devices::discover::{self, Decision};
use crate::devices::identity::Identity;
use crate::devices::ledger;
use crate::devices::naming::Ledger;
use crate::devices::scan::Card;
use crate::devices::watch::DeviceEvent;
use crate::health::{Action, Input, Note, Policy, StreamHealth};
use crate::media::{MediaEvent, MediaHandle};

/// Everything the supervisor reacts to.
#[derive(Debug)]
pub enum Event {
    Media(MediaEvent),
    Device(DeviceEvent),
    /// The cards present at start-up, named together (in port order).
    Coldplug(Vec<Card>),
    /// Re-read the config file and apply the difference.
    Reload,
    /// Restart one stream's capture; the reply says whether the stream exists.
    RestartStream {
        name: String,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Stop every stream and return.
    Shutdown,
    /// The watchdog's probe: answered at once by a loop that is alive.
    Ping(tokio::sync::oneshot::Sender<()>),
    /// The deadman's state changed (shown with the snapshot).
    Deadman(crate::deadman::DeadmanStatus),
    /// Test hook (`--test-hooks`, SIGUSR2): the loop stops answering, as a
    /// deadlocked agent would, so tests can watch the watchdog act.
    Wedge,
}

/// One stream as the outside world sees it (field names are part of the HTTP
/// API: keep them stable).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub state: &'static str,
    pub codec: &'static str,
    pub sample_rate: u32,
    pub channels: u32,
    pub clients: usize,
    /// Encoded bytes sent to clients (RTP payload before packetisation).
    pub bytes_sent: u64,
    pub peak_dbfs: Option<f64>,
    pub rms_dbfs: Option<f64>,
    pub silent: bool,
    pub restarts: u64,
    pub stalls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// The sound card it captures, for streams that follow a device.
    pub card: Option<u32>,
    /// "tone" (built in), "alsa" (a configured capture device) or "device"
    /// (a discovered microphone).
    pub source: &'static str,
}

impl StreamStatus {
    /// Does it capture from a sound device (as opposed to the built-in tone)?
    pub fn captures(&self) -> bool {
        self.source != "tone"
    }
}

/// One sound card the agent has seen.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceStatus {
    pub card: u32,
    /// "streaming", "ignored" or "unplayable".
    pub status: &'static str,
    pub name: Option<String>,
    pub reason: Option<String>,
    pub vendor_product: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub port: Option<String>,
    /// The ALSA card id (pinned to the name when that succeeded).
    pub card_id: String,
    /// Capture capabilities: sample formats, rates, most channels.
    pub formats: Vec<String>,
    pub rates: Vec<u32>,
    pub channels: u32,
}

/// An immutable picture of the agent, published after every change.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub streams: Vec<StreamStatus>,
    pub devices: Vec<DeviceStatus>,
    pub deadman: crate::deadman::DeadmanStatus,
}

impl Snapshot {
    /// One line for logs and systemd's STATUS=: "2 streams running, 1 silent".
    pub fn summary(&self) -> String {
        let total = self.streams.len();
        let running = self.streams.iter().filter(|s| s.state == "running").count();
        let silent = self.streams.iter().filter(|s| s.silent).count();
        let down = total - running;
        let mut parts = vec![format!(
            "{running} stream{} running",
            if running == 1 { "" } else { "s" }
        )];
        if silent > 0 {
            parts.push(format!("{silent} silent"));
        }
        if down > 0 {
            parts.push(format!("{down} not running"));
        }
        parts.join(", ")
    }

    /// `summary` plus the deadman when it has something to say: systemd's STATUS=.
    pub fn status_line(&self) -> String {
        let d = &self.deadman;
        match d.state {
            "refusing" | "locked" | "error" if d.enabled => format!(
                "{}; deadman {}: {}",
                self.summary(),
                d.state,
                d.detail.as_deref().unwrap_or("")
            ),
            _ => self.summary(),
        }
    }
}

struct Entry {
    spec: StreamSpec,
    health: StreamHealth,
    clients: usize,
    bytes_sent: u64,
    /// The card this stream captures, for streams that follow a device.
    card: Option<u32>,
}

/// A sound card the agent knows about, streamed or not.
#[derive(Debug, Clone)]
struct DeviceState {
    identity: Option<Identity>,
    name: Option<String>,
    status: &'static str,
    reason: Option<String>,
    card_id: String,
    capture: Vec<crate::devices::asound::AltSetting>,
}

/// Where device names are kept and card ids are written.
#[derive(Debug, Clone)]
pub struct DeviceIo {
    /// The sysfs root (`/sys`), for pinning card ids.
    pub sysfs: std::path::PathBuf,
    pub ledger_path: std::path::PathBuf,
}

impl DeviceIo {
    fn pin(&self, card: u32, id: &str) -> std::io::Result<()> {
        std::fs::write(self.sysfs.join(format!("class/sound/card{card}/id")), id)
    }
}

pub struct Supervisor {
    config: Arc<Config>,
    policy: Policy,
    streams: BTreeMap<String, Entry>,
    media: MediaHandle,
    snapshot: watch::Sender<Snapshot>,
    last_summary: String,
    devices: BTreeMap<u32, DeviceState>,
    ledger: Ledger,
    device_io: DeviceIo,
    deadman: crate::deadman::DeadmanStatus,
}

/// How often stall deadlines and retries are checked.
const TICK: Duration = Duration::from_millis(100);

pub fn policy_of(config: &Config) -> Policy {
    Policy {
        stall_timeout: config.health.stall_timeout,
        silence_threshold_dbfs: config.health.silence_threshold_dbfs,
        silence_after: config.health.silence_after,
        backoff: Backoff {
            initial: config.restart.initial,
            max: config.restart.max,
        },
        reset_after: config.restart.reset_after,
    }
}

impl Supervisor {
    pub fn new(
        config: Arc<Config>,
        media: MediaHandle,
        ledger: Ledger,
        device_io: DeviceIo,
    ) -> (Supervisor, watch::Receiver<Snapshot>) {
        let (snapshot, rx) = watch::channel(Snapshot::default());
        let sup = Supervisor {
            policy: policy_of(&config),
            config,
            streams: BTreeMap::new(),
            media,
            snapshot,
            last_summary: String::new(),
            devices: BTreeMap::new(),
            ledger,
            device_io,
            deadman: crate::deadman::DeadmanStatus::default(),
        };
        (sup, rx)
    }

    fn add(&mut self, spec: StreamSpec, now: Instant) {
        self.add_for(spec, None, now);
    }

    fn add_for(&mut self, spec: StreamSpec, card: Option<u32>, now: Instant) {
        let (health, action) = StreamHealth::new(now);
        self.media.mount(spec.clone());
        let name = spec.name.clone();
        self.streams.insert(
            name.clone(),
            Entry {
                spec,
                health,
                clients: 0,
                bytes_sent: 0,
                card,
            },
        );
        self.act(&name, action);
    }

    /// A card appeared: name it, pin it, plan it, stream it (or say why not).
    fn device_added(&mut self, card: Card, now: Instant) {
        let index = card.index;
        if self.devices.contains_key(&index) {
            // Announced twice (a resync): start over with what is there now.
            self.device_removed(index);
        }
        let others: Vec<Identity> = self
            .devices
            .values()
            .filter_map(|d| d.identity.clone())
            .collect();
        let in_use: BTreeSet<String> = self.streams.keys().cloned().collect();
        let config = self.config.clone();
        let cfg = &config.devices;
        match discover::decide(&card, cfg, &others, &in_use, &self.ledger) {
            Decision::Ignore { reason } => {
                tracing::info!(card = index, card_id = %card.card_id, reason = %reason, "device ignored");
                self.devices.insert(
                    index,
                    DeviceState {
                        identity: card.identity.clone(),
                        name: None,
                        status: "ignored",
                        reason: Some(reason),
                        card_id: card.card_id.clone(),
                        capture: card.capture.clone(),
                    },
                );
            }
            Decision::Unplayable {
                assignment,
                identity,
                reason,
            } => {
                tracing::warn!(card = index, stream = %assignment.name, reason = %reason, "device cannot be streamed");
                self.remember(&identity, &assignment, &card);
                if let Some(d) = self.devices.get_mut(&index) {
                    d.status = "unplayable";
                    d.reason = Some(reason);
                }
            }
            Decision::Stream {
                assignment,
                identity,
                plan,
                mut spec,
            } => {
                self.remember(&identity, &assignment, &card);
                let mut card_id = card.card_id.clone();
                let wanted = discover::alsa_card_id(&assignment.name);
                if cfg.pin_card_id && wanted != card.card_id {
                    let id = wanted;
                    if let Err(e) = self.device_io.pin(index, &id) {
                        // Capture through the id the card still has.
                        tracing::warn!(card = index, card_id = %card.card_id, wanted = %id, error = %e, "cannot pin the ALSA card id");
                        if let crate::config::Source::Alsa { device, .. } = &mut spec.source {
                            *device = discover::alsa_device(
                                &cfg.alsa_device,
                                &card.card_id,
                                index,
                                card.capture_pcms.first().copied().unwrap_or(0),
                            );
                        }
                    } else {
                        card_id = id;
                    }
                }
                tracing::info!(
                    card = index,
                    stream = %assignment.name,
                    why = ?assignment.reason,
                    vendor_product = %identity.vendor_product(),
                    serial = identity.serial.as_deref().unwrap_or(""),
                    port = %identity.port_path,
                    card_id = %card_id,
                    capture = ?plan.as_ref().map(|p| (p.format.as_str().to_string(), p.capture_rate, p.capture_channels)),
                    "device added"
                );
                if let Some(d) = self.devices.get_mut(&index) {
                    d.card_id = card_id;
                }
                self.add_for(spec, Some(index), now);
            }
        }
    }

    /// Records a device's name in memory and on disk (a failure to write is
    /// reported; the name holds in memory).
    fn remember(
        &mut self,
        identity: &Identity,
        a: &crate::devices::naming::Assignment,
        card: &Card,
    ) {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.ledger.record(identity, a, unix);
        if let Err(e) = ledger::save(&self.device_io.ledger_path, &self.ledger) {
            tracing::error!(error = %e, "name ledger not saved");
        }
        self.devices.insert(
            card.index,
            DeviceState {
                identity: Some(identity.clone()),
                name: Some(a.name.clone()),
                status: "streaming",
                reason: None,
                card_id: card.card_id.clone(),
                capture: card.capture.clone(),
            },
        );
    }

    /// A card went away: its stream stops at once, never retried against nothing.
    fn device_removed(&mut self, index: u32) {
        let Some(dev) = self.devices.remove(&index) else {
            return;
        };
        let stream = self
            .streams
            .iter()
            .find(|(_, e)| e.card == Some(index))
            .map(|(n, _)| n.clone());
        if let Some(name) = stream {
            self.remove(&name);
        }
        tracing::info!(
            card = index,
            stream = dev.name.as_deref().unwrap_or(""),
            "device removed"
        );
    }

    fn coldplug(&mut self, mut cards: Vec<Card>, now: Instant) {
        // Port order, so twins get the same names whatever order the kernel
        // numbered them in.
        cards.sort_by(|a, b| {
            let key = |c: &Card| c.identity.as_ref().map(|i| i.port_path.clone());
            key(a).cmp(&key(b)).then(a.index.cmp(&b.index))
        });
        for card in cards {
            self.device_added(card, now);
        }
    }

    fn remove(&mut self, name: &str) {
        if self.streams.remove(name).is_some() {
            self.media.unmount(name);
            tracing::info!(stream = name, "stream removed");
        }
    }

    fn act(&self, name: &str, action: Action) {
        let Some(e) = self.streams.get(name) else {
            return;
        };
        match action {
            Action::Start { generation } => self.media.start(e.spec.clone(), generation),
            Action::Stop { generation } => self.media.stop(name, generation),
        }
    }

    /// Feeds one input to a stream's state machine and carries out the result.
    fn feed(&mut self, name: &str, input: Input, now: Instant) {
        let policy = self.policy;
        let Some(e) = self.streams.get_mut(name) else {
            return;
        };
        let step = e.health.step(input, now, &policy, fastrand::f64());
        for note in &step.notes {
            log_note(name, &e.health, note);
        }
        for action in step.actions {
            self.act(name, action);
        }
    }

    fn on_media(&mut self, ev: MediaEvent, now: Instant) {
        match ev {
            MediaEvent::Level {
                stream,
                generation,
                peak_dbfs,
                rms_dbfs,
                bytes_sent,
            } => {
                if let Some(e) = self.streams.get_mut(&stream) {
                    e.bytes_sent = bytes_sent;
                }
                if self.is_current(&stream, generation) {
                    self.feed(
                        &stream,
                        Input::Level {
                            peak_dbfs,
                            rms_dbfs,
                        },
                        now,
                    );
                }
            }
            MediaEvent::Failed {
                stream,
                generation,
                reason,
            } => {
                // A microphone pulled out mid-stream: the pipeline's error
                // ("device disconnected") usually comes before udev's remove
                // event. If the card is already gone, it is a removal now, not a
                // failure to retry against a missing device.
                let card = self.streams.get(&stream).and_then(|e| e.card);
                if let Some(index) = card
                    && self.is_current(&stream, generation)
                    && !self
                        .device_io
                        .sysfs
                        .join("class/sound")
                        .join(format!("card{index}"))
                        .exists()
                {
                    tracing::info!(stream = %stream, card = index, reason = %reason, "capture ended: the card is gone");
                    self.device_removed(index);
                } else if self.is_current(&stream, generation) {
                    self.feed(&stream, Input::Failure { reason }, now);
                } else {
                    tracing::debug!(stream = %stream, generation, reason = %reason, "stale failure ignored");
                }
            }
            MediaEvent::Clients { stream, count } => {
                if let Some(e) = self.streams.get_mut(&stream) {
                    e.clients = count;
                    tracing::debug!(stream = %stream, clients = count, "clients changed");
                }
            }
        }
    }

    fn restart(&mut self, name: &str, now: Instant) -> bool {
        let Some(e) = self.streams.get_mut(name) else {
            return false;
        };
        let step = e.health.restart_now(now);
        tracing::info!(
            stream = name,
            generation = e.health.generation,
            "restart requested"
        );
        for action in step.actions {
            self.act(name, action);
        }
        true
    }

    fn is_current(&self, stream: &str, generation: u64) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|e| e.health.generation == generation)
    }

    fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| e.health.next_deadline(&self.policy) <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.feed(&name, Input::Tick, now);
        }
    }

    /// Re-reads the config and applies the difference: removed streams stop, new
    /// ones start, changed ones restart; untouched streams are not disturbed.
    fn reload(&mut self, now: Instant) {
        crate::notify::reloading();
        self.apply_reload(now);
        self.publish();
        crate::notify::ready(&self.snapshot.borrow().status_line());
    }

    fn apply_reload(&mut self, now: Instant) {
        let path = self.config.path.clone();
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload refused: configuration is invalid; keeping the running one");
                return;
            }
        };
        if new.rtsp != self.config.rtsp || new.http != self.config.http {
            tracing::warn!(
                "rtsp and http settings change only on restart; keeping the running ones"
            );
        }
        let wanted: BTreeMap<&str, &StreamSpec> =
            new.streams.iter().map(|s| (s.name.as_str(), s)).collect();
        let gone: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| e.card.is_none())
            .filter(|(name, e)| wanted.get(name.as_str()) != Some(&&e.spec))
            .map(|(n, _)| n.clone())
            .collect();
        let (mut added, mut changed, mut removed) = (0, 0, 0);
        for name in &gone {
            if wanted.contains_key(name.as_str()) {
                changed += 1;
            } else {
                removed += 1;
            }
            self.remove(name);
        }
        self.policy = policy_of(&new);
        for spec in &new.streams {
            if self
                .streams
                .get(&spec.name)
                .is_some_and(|e| e.card.is_some())
            {
                tracing::warn!(stream = %spec.name, "a configured stream has the name of a device's stream; not started");
                continue;
            }
            if !self.streams.contains_key(&spec.name) {
                if !gone.contains(&spec.name) {
                    added += 1;
                }
                self.add(spec.clone(), now);
            }
        }
        self.config = Arc::new(new);
        tracing::info!(added, removed, changed, "configuration reloaded");
    }

    fn publish(&mut self) {
        let snap = Snapshot {
            streams: self
                .streams
                .values()
                .map(|e| StreamStatus {
                    name: e.spec.name.clone(),
                    state: e.health.phase.as_str(),
                    codec: e.spec.encoding.codec.as_str(),
                    sample_rate: e.spec.encoding.sample_rate,
                    channels: e.spec.encoding.channels,
                    clients: e.clients,
                    bytes_sent: e.bytes_sent,
                    peak_dbfs: e.health.peak_dbfs,
                    rms_dbfs: e.health.rms_dbfs,
                    silent: e.health.silent,
                    restarts: e.health.restarts,
                    stalls: e.health.stalls,
                    failures: e.health.failures,
                    last_error: e.health.last_error.clone(),
                    card: e.card,
                    source: match (&e.spec.source, e.card) {
                        (crate::config::Source::Tone { .. }, _) => "tone",
                        (_, Some(_)) => "device",
                        (_, None) => "alsa",
                    },
                })
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|(card, d)| DeviceStatus {
                    card: *card,
                    status: d.status,
                    name: d.name.clone(),
                    reason: d.reason.clone(),
                    vendor_product: d.identity.as_ref().map(Identity::vendor_product),
                    serial: d.identity.as_ref().and_then(|i| i.serial.clone()),
                    manufacturer: d.identity.as_ref().and_then(|i| i.manufacturer.clone()),
                    product: d.identity.as_ref().and_then(|i| i.product.clone()),
                    port: d.identity.as_ref().map(|i| i.port_path.clone()),
                    card_id: d.card_id.clone(),
                    formats: {
                        let mut f: Vec<String> = d
                            .capture
                            .iter()
                            .flat_map(|a| a.formats.iter().map(|x| x.as_str().to_string()))
                            .collect();
                        f.sort();
                        f.dedup();
                        f
                    },
                    rates: {
                        let mut r: Vec<u32> =
                            d.capture.iter().flat_map(|a| a.rates.listed()).collect();
                        r.sort_unstable();
                        r.dedup();
                        r
                    },
                    channels: d.capture.iter().map(|a| a.channels).max().unwrap_or(0),
                })
                .collect(),
            deadman: self.deadman.clone(),
        };
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
    /// must exit non-zero so systemd restarts it).
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Result<(), SupervisorError> {
        let now = Instant::now();
        let specs = self.config.streams.clone();
        if specs.is_empty() {
            tracing::warn!(config = %self.config.path.display(), "no streams configured");
        }
        for spec in specs {
            self.add(spec, now);
        }
        self.publish();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Every report, request and signal arrives here, in order.
                ev = events.recv() => match ev {
                    Some(Event::Media(m)) => self.on_media(m, Instant::now()),
                    Some(Event::Device(DeviceEvent::Added(card))) => self.device_added(*card, Instant::now()),
                    Some(Event::Device(DeviceEvent::Removed { index })) => self.device_removed(index),
                    Some(Event::Coldplug(cards)) => self.coldplug(cards, Instant::now()),
                    Some(Event::Reload) => self.reload(Instant::now()),
                    Some(Event::RestartStream { name, reply }) => {
                        let found = self.restart(&name, Instant::now());
                        let _ = reply.send(found);
                    }
                    Some(Event::Shutdown) | None => break,
                    Some(Event::Ping(reply)) => {
                        let _ = reply.send(());
                        continue;
                    }
                    Some(Event::Deadman(d)) => self.deadman = d,
                    Some(Event::Wedge) => {
                        tracing::warn!("test hook: the supervisor stops answering");
                        std::future::pending::<()>().await;
                    }
                },
                // Stall deadlines and retry times are checked on a steady tick.
                _ = ticker.tick() => self.tick(Instant::now()),
                // The media thread is gone: nothing here can work any more.
                _ = self.media.closed() => return Err(SupervisorError::MediaThreadEnded),
            }
            self.publish();
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the media thread ended unexpectedly")]
    MediaThreadEnded,
}

fn log_note(stream: &str, h: &StreamHealth, note: &Note) {
    let generation = h.generation;
    match note {
        Note::Running => tracing::info!(stream, generation, state = "running", "audio is flowing"),
        Note::Stalled { silent_for } => tracing::warn!(
            stream,
            generation,
            state = "stalled",
            no_audio_ms = silent_for.as_millis() as u64,
            "capture stalled"
        ),
        Note::Failed { reason } => {
            tracing::warn!(stream, generation, state = "failed", reason = %reason, "capture failed")
        }
        Note::Retrying { attempt, delay } => tracing::info!(
            stream,
            generation,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "restart scheduled"
        ),
        Note::Restarted { generation } => tracing::info!(
            stream,
            generation,
            restarts = h.restarts,
            "restarting capture"
        ),
        Note::SilenceBegan => tracing::warn!(
            stream,
            generation,
            silent = true,
            rms_dbfs = h.rms_dbfs,
            "stream is silent"
        ),
        Note::SilenceEnded => tracing::info!(
            stream,
            generation,
            silent = false,
            rms_dbfs = h.rms_dbfs,
            "sound returned"
        ),
        Note::BackoffReset => tracing::debug!(stream, generation, "healthy again; backoff reset"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: &'static str, silent: bool) -> StreamStatus {
        StreamStatus {
            name: name.into(),
            state,
            codec: "opus",
            sample_rate: 48_000,
            channels: 1,
            clients: 0,
            bytes_sent: 0,
            peak_dbfs: None,
            rms_dbfs: None,
            silent,
            restarts: 0,
            stalls: 0,
            failures: 0,
            last_error: None,
            card: None,
            source: "tone",
        }
    }

    #[test]
    fn summary_lines() {
        let cases = [
            (vec![], "0 streams running"),
            (vec![status("a", "running", false)], "1 stream running"),
            (
                vec![
                    status("a", "running", false),
                    status("b", "running", true),
                    status("c", "stalled", false),
                ],
                "2 streams running, 1 silent, 1 not running",
            ),
        ];
        for (streams, want) in cases {
            let snap = Snapshot {
                streams,
                ..Snapshot::default()
            };
            assert_eq!(snap.summary(), want);
        }
    }
}
