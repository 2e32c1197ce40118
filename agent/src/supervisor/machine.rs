//! The supervisor's decisions as a pure state machine: `(state, input, now) ->
//! effects`. It owns every stream, every device seen, the name ledger in memory
//! and the running configuration, and it never touches a clock, a file, a
//! channel or GStreamer: the shell (`supervisor/mod.rs`) feeds it inputs and
//! carries out the [`Effect`]s, so every rule here is table-tested with made-up
//! instants (`supervisor/tests.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::{Config, Source, StreamSpec};
use crate::devices::discover::{self, Decision};
use crate::devices::identity::Identity;
use crate::devices::naming::{Assignment, Ledger};
use crate::devices::scan::Card;
use crate::health::{Action, Input as HealthInput, Note, Policy, StreamHealth};
use crate::state::{
    BusStatus, DeadmanStatus, DeviceState, DeviceStatus, GroupStatus, ReloadReport, Snapshot,
    SourceKind, StreamState, StreamStatus,
};

/// Everything the machine reacts to.
#[derive(Debug, Clone)]
pub enum Input {
    /// Start the configured streams (once, first).
    Start,
    /// The cards present at start-up, named together.
    Coldplug(Vec<Card>),
    /// A card appeared (or was announced again).
    Added(Card),
    /// A card went away.
    Removed {
        index: u32,
    },
    /// The shell tried to write the card id a device's name asked for.
    Pinned {
        card: u32,
        id: String,
        result: Result<(), String>,
    },
    /// A level reading from a pipeline: audio flows.
    Level {
        stream: String,
        generation: u64,
        peak_dbfs: f64,
        rms_dbfs: f64,
        bytes_sent: u64,
        /// Groups: members, channel map, levels per channel.
        group: Option<Box<GroupStatus>>,
    },
    /// A pipeline failed; `card_present` says whether the stream's card is still
    /// there (always true for streams that do not follow a device).
    Failed {
        stream: String,
        generation: u64,
        reason: String,
        card_present: bool,
    },
    Clients {
        stream: String,
        count: usize,
    },
    /// Time passed (stall deadlines, retries).
    Tick,
    /// The configuration file was read again (or could not be).
    Reload(Result<Arc<Config>, String>),
    /// Restart one stream's capture now.
    Restart {
        name: String,
    },
    Deadman(DeadmanStatus),
    /// The D-Bus connection's state changed (shown, never acted on).
    Bus(BusStatus),
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Add the RTSP mount (clients get 503 until audio flows).
    Mount(StreamSpec),
    Start {
        spec: StreamSpec,
        generation: u64,
        /// It follows a discovered device (a member of `members = "all"` groups).
        device: bool,
        /// It is a member of a configured group.
        tap: bool,
    },
    Stop {
        stream: String,
        generation: u64,
    },
    /// Stop the pipeline, end the clients, remove the mount.
    Unmount(String),
    /// Start or stop recording the stream (a reload changed only `record`:
    /// the capture and its clients are not touched).
    Record {
        stream: String,
        on: bool,
    },
    /// Write `id` as the card's ALSA id, then answer with [`Input::Pinned`].
    PinCardId {
        card: u32,
        id: String,
    },
    /// Write the name ledger (the latest one wins).
    SaveLedger(Ledger),
}

/// The answer to a request, besides the effects.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    None,
    /// Did the stream exist?
    Restart(bool),
    Reload(ReloadReport),
}

#[derive(Debug)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub answer: Answer,
}

struct Stream {
    spec: StreamSpec,
    health: StreamHealth,
    clients: usize,
    bytes_sent: u64,
    /// The card it captures, for streams that follow a device.
    card: Option<u32>,
    /// Groups: the mixer's latest view.
    group: Option<GroupStatus>,
}

/// A card the machine has seen.
#[derive(Debug, Clone)]
struct Device {
    card: Card,
    state: DeviceState,
    reason: Option<String>,
    /// The identity it was named by (USB, or the stand-in of an allowed
    /// non-USB card).
    identity: Option<Identity>,
    assignment: Option<Assignment>,
    card_id: String,
    /// The stream to start once the card id is pinned.
    pending: Option<StreamSpec>,
}

impl Device {
    fn named(&self) -> Option<(Identity, String)> {
        match (&self.identity, &self.assignment) {
            (Some(i), Some(a)) => Some((i.clone(), a.name.clone())),
            _ => None,
        }
    }
}

/// Keys whose change takes effect only when harkd starts again: the RTSP and
/// HTTP listeners, the deadman (its monitor and unit are set up at start), the
/// level interval (every pipeline measures with it), where devices are
/// watched and remembered, `[recording]` (its janitor starts with the
/// media thread; `record` itself follows a reload, per stream), and the
/// `[[alert]]` webhooks (their senders start with the agent).
fn needs_restart(key: &str) -> bool {
    key.starts_with("alert[")
        || key.starts_with("rtsp.")
        || key.starts_with("http.")
        || key.starts_with("deadman.")
        || key.starts_with("recording.")
        || matches!(
            key,
            "health.level_interval_ms" | "devices.enabled" | "devices.state_dir"
        )
}

fn restart_keys(boot: &Config, new: &Config) -> Vec<String> {
    boot.changed_keys(new)
        .into_iter()
        .filter(|k| needs_restart(k))
        .collect()
}

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

pub struct Machine {
    /// The configuration harkd started with (what needs a restart stays so).
    boot: Arc<Config>,
    config: Arc<Config>,
    policy: Policy,
    streams: BTreeMap<String, Stream>,
    devices: BTreeMap<u32, Device>,
    ledger: Ledger,
    deadman: DeadmanStatus,
    bus: BusStatus,
    pending_restart: Vec<String>,
    /// Unix seconds for the ledger's first/last seen (set by the shell).
    pub unix_now: u64,
    rng: fastrand::Rng,
    out: Vec<Effect>,
}

impl Machine {
    pub fn new(config: Arc<Config>, ledger: Ledger, seed: u64) -> Machine {
        Machine {
            policy: policy_of(&config),
            boot: config.clone(),
            config,
            streams: BTreeMap::new(),
            devices: BTreeMap::new(),
            ledger,
            deadman: DeadmanStatus::default(),
            bus: BusStatus::default(),
            pending_restart: Vec::new(),
            unix_now: 0,
            rng: fastrand::Rng::with_seed(seed),
            out: Vec::new(),
        }
    }

    /// Handles one input; returns what the shell must do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Outcome {
        let answer = match input {
            Input::Start => {
                self.start(now);
                Answer::None
            }
            Input::Coldplug(cards) => {
                self.coldplug(cards, now);
                Answer::None
            }
            Input::Added(card) => {
                self.added(card, now);
                Answer::None
            }
            Input::Removed { index } => {
                self.removed(index, now);
                Answer::None
            }
            Input::Pinned { card, id, result } => {
                self.pinned(card, &id, result, now);
                Answer::None
            }
            Input::Level {
                stream,
                generation,
                peak_dbfs,
                rms_dbfs,
                bytes_sent,
                group,
            } => {
                if let Some(e) = self.streams.get_mut(&stream) {
                    e.bytes_sent = bytes_sent;
                    if group.is_some() {
                        e.group = group.map(|g| *g);
                    }
                }
                if self.is_current(&stream, generation) {
                    let level = HealthInput::Level {
                        peak_dbfs,
                        rms_dbfs,
                    };
                    self.feed(&stream, level, now);
                }
                Answer::None
            }
            Input::Failed {
                stream,
                generation,
                reason,
                card_present,
            } => {
                self.failed(&stream, generation, reason, card_present, now);
                Answer::None
            }
            Input::Clients { stream, count } => {
                if let Some(e) = self.streams.get_mut(&stream) {
                    e.clients = count;
                    tracing::debug!(stream = %stream, clients = count, "clients changed");
                }
                Answer::None
            }
            Input::Tick => {
                self.tick(now);
                Answer::None
            }
            Input::Reload(new) => Answer::Reload(self.reload(new, now)),
            Input::Restart { name } => Answer::Restart(self.restart(&name, now)),
            Input::Deadman(d) => {
                self.deadman = d;
                Answer::None
            }
            Input::Bus(b) => {
                self.bus = b;
                Answer::None
            }
        };
        Outcome {
            effects: std::mem::take(&mut self.out),
            answer,
        }
    }

    /// The stream's card, for streams that follow a device.
    pub fn card_of(&self, stream: &str) -> Option<u32> {
        self.streams.get(stream).and_then(|s| s.card)
    }

    /// When the machine next needs a [`Input::Tick`], if anything waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .map(|e| e.health.next_deadline(&self.policy))
            .min()
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    fn start(&mut self, now: Instant) {
        let specs = self.config.streams.clone();
        if specs.is_empty() {
            tracing::warn!(config = %self.config.path.display(), "no streams configured");
        }
        for spec in specs {
            self.add_stream(spec, None, now);
        }
    }

    fn add_stream(&mut self, spec: StreamSpec, card: Option<u32>, now: Instant) {
        let (health, action) = StreamHealth::new(now);
        self.out.push(Effect::Mount(spec.clone()));
        let name = spec.name.clone();
        self.streams.insert(
            name.clone(),
            Stream {
                spec,
                health,
                clients: 0,
                bytes_sent: 0,
                group: None,
                card,
            },
        );
        self.act(&name, action);
    }

    fn remove_stream(&mut self, name: &str) {
        if self.streams.remove(name).is_some() {
            self.out.push(Effect::Unmount(name.to_string()));
            tracing::info!(stream = name, "stream removed");
        }
    }

    fn act(&mut self, name: &str, action: Action) {
        let Some(e) = self.streams.get(name) else {
            return;
        };
        self.out.push(match action {
            Action::Start { generation } => Effect::Start {
                spec: e.spec.clone(),
                generation,
                device: e.card.is_some(),
                tap: self.config.streams.iter().any(|s| {
                    matches!(&s.source, Source::Group(g) if g.has_member(name, e.card.is_some()))
                }),
            },
            Action::Stop { generation } => Effect::Stop {
                stream: name.to_string(),
                generation,
            },
        });
    }

    /// Feeds one input to a stream's health and carries out the result.
    fn feed(&mut self, name: &str, input: HealthInput, now: Instant) {
        let policy = self.policy;
        let jitter = self.rng.f64();
        let Some(e) = self.streams.get_mut(name) else {
            return;
        };
        let step = e.health.step(input, now, &policy, jitter);
        for note in &step.notes {
            log_note(name, &e.health, note);
        }
        for action in step.actions {
            self.act(name, action);
        }
    }

    fn is_current(&self, stream: &str, generation: u64) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|e| e.health.generation == generation)
    }

    fn failed(
        &mut self,
        stream: &str,
        generation: u64,
        reason: String,
        card_present: bool,
        now: Instant,
    ) {
        if !self.is_current(stream, generation) {
            tracing::debug!(stream = %stream, generation, reason = %reason, "stale failure ignored");
            return;
        }
        // A microphone pulled out mid-stream: the pipeline's error usually comes
        // before udev's remove event. With the card gone it is a removal, not a
        // failure to retry against a missing device.
        match self.card_of(stream) {
            Some(index) if !card_present => {
                tracing::info!(stream = %stream, card = index, reason = %reason, "capture ended: the card is gone");
                self.removed(index, now);
            }
            _ => self.feed(stream, HealthInput::Failure { reason }, now),
        }
    }

    fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| e.health.next_deadline(&self.policy) <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.feed(&name, HealthInput::Tick, now);
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

    // ---- devices -------------------------------------------------------

    /// Names configured streams hold (devices never take them).
    fn reserved(&self) -> BTreeSet<String> {
        self.config.streams.iter().map(|s| s.name.clone()).collect()
    }

    fn named_devices(&self) -> Vec<(Identity, String)> {
        self.devices.values().filter_map(Device::named).collect()
    }

    fn coldplug(&mut self, cards: Vec<Card>, now: Instant) {
        let mut fresh = Vec::new();
        for card in cards {
            match self.devices.get(&card.index) {
                // Announced already by the watcher, which starts first.
                Some(d) if same_card(&d.card, &card) => {}
                Some(_) => {
                    self.forget(card.index);
                    fresh.push(card);
                }
                None => fresh.push(card),
            }
        }
        self.decide(fresh, now);
    }

    fn added(&mut self, card: Card, now: Instant) {
        if let Some(d) = self.devices.get(&card.index) {
            if same_card(&d.card, &card) {
                tracing::debug!(card = card.index, "device announced again; nothing changed");
                return;
            }
            // Another device on the index of one that left unseen.
            self.removed(card.index, now);
        }
        self.decide(vec![card], now);
    }

    /// The one naming path for cards appearing together.
    fn decide(&mut self, cards: Vec<Card>, now: Instant) {
        if cards.is_empty() {
            return;
        }
        let named = self.named_devices();
        let reserved = self.reserved();
        let config = self.config.clone();
        let before = self.ledger.clone();
        let decisions = discover::decide_set(
            &cards,
            &named,
            &reserved,
            &config.devices,
            &mut self.ledger,
            self.unix_now,
        );
        if self.ledger != before {
            self.out.push(Effect::SaveLedger(self.ledger.clone()));
        }
        let mut order: Vec<(Card, Decision)> = cards.into_iter().zip(decisions).collect();
        order.sort_by_key(|(c, _)| (c.identity.as_ref().map(|i| i.port_path.clone()), c.index));
        for (card, decision) in order {
            self.apply_decision(card, decision, now);
        }
    }

    fn apply_decision(&mut self, card: Card, decision: Decision, now: Instant) {
        let index = card.index;
        let mut dev = Device {
            card_id: card.card_id.clone(),
            identity: card.identity.clone(),
            card,
            state: DeviceState::Ignored,
            reason: None,
            assignment: None,
            pending: None,
        };
        match decision {
            Decision::Ignore { reason } => {
                tracing::info!(card = index, card_id = %dev.card_id, reason = %reason, "device ignored");
                dev.reason = Some(reason);
            }
            Decision::Conflict { identity, reason } => {
                tracing::warn!(card = index, port = %identity.port_path, reason = %reason, "device not streamed: name conflict");
                dev.state = DeviceState::Conflict;
                dev.identity = Some(identity);
                dev.reason = Some(reason);
            }
            Decision::Unplayable {
                assignment,
                identity,
                reason,
            } => {
                tracing::warn!(card = index, stream = %assignment.name, reason = %reason, "device cannot be streamed");
                dev.state = DeviceState::Unplayable;
                dev.identity = Some(identity);
                dev.assignment = Some(assignment);
                dev.reason = Some(reason);
            }
            Decision::Stream {
                assignment,
                identity,
                plan,
                spec,
            } => {
                tracing::info!(
                    card = index,
                    stream = %assignment.name,
                    why = ?assignment.reason,
                    vendor_product = %identity.vendor_product(),
                    serial = identity.serial.as_deref().unwrap_or(""),
                    port = %identity.port_path,
                    card_id = %dev.card_id,
                    capture = ?plan.as_ref().map(|p| (p.format.as_str().to_string(), p.capture_rate, p.capture_channels)),
                    "device added"
                );
                let wanted = discover::alsa_card_id(&assignment.name);
                dev.identity = Some(identity);
                dev.assignment = Some(assignment);
                if self.config.devices.pin_card_id && wanted != dev.card_id {
                    dev.state = DeviceState::Pinning;
                    dev.pending = Some(spec);
                    self.out.push(Effect::PinCardId {
                        card: index,
                        id: wanted,
                    });
                } else {
                    dev.state = DeviceState::Streaming;
                    self.add_stream(spec, Some(index), now);
                }
            }
        }
        self.devices.insert(index, dev);
    }

    fn pinned(&mut self, index: u32, id: &str, result: Result<(), String>, now: Instant) {
        let Some(dev) = self.devices.get_mut(&index) else {
            return;
        };
        let Some(mut spec) = dev.pending.take() else {
            return;
        };
        match result {
            Ok(()) => dev.card_id = id.to_string(),
            Err(e) => {
                // Capture through the id the card still has.
                tracing::warn!(card = index, card_id = %dev.card_id, wanted = %id, error = %e, "cannot pin the ALSA card id");
                if let Source::Alsa { device, .. } = &mut spec.source {
                    *device = discover::alsa_device(
                        &self.config.devices.alsa_device,
                        &dev.card_id,
                        index,
                        dev.card.capture_pcms.first().copied().unwrap_or(0),
                    );
                }
            }
        }
        dev.state = DeviceState::Streaming;
        self.add_stream(spec, Some(index), now);
    }

    /// A card went away: its stream stops at once, never retried against
    /// nothing; devices that could not have their name may have it now.
    fn removed(&mut self, index: u32, now: Instant) {
        let had_name = self.forget(index);
        if had_name {
            let waiting: Vec<Card> = self
                .devices
                .values()
                .filter(|d| d.state == DeviceState::Conflict)
                .map(|d| d.card.clone())
                .collect();
            for card in &waiting {
                self.devices.remove(&card.index);
            }
            self.decide(waiting, now);
        }
    }

    /// Drops a device and its stream; says whether it held a name.
    fn forget(&mut self, index: u32) -> bool {
        let Some(dev) = self.devices.remove(&index) else {
            return false;
        };
        let stream = self
            .streams
            .iter()
            .find(|(_, e)| e.card == Some(index))
            .map(|(n, _)| n.clone());
        if let Some(name) = stream {
            self.remove_stream(&name);
        }
        tracing::info!(
            card = index,
            stream = dev.assignment.as_ref().map_or("", |a| a.name.as_str()),
            "device removed"
        );
        dev.assignment.is_some()
    }

    // ---- reload --------------------------------------------------------

    fn reload(&mut self, new: Result<Arc<Config>, String>, now: Instant) -> ReloadReport {
        let new = match new {
            Ok(c) => c,
            Err(e) => {
                return refused(format!(
                    "the configuration is invalid; keeping the running one: {e}"
                ));
            }
        };
        // The level interval stays the running one until a restart; a stall is
        // seen from missing readings, so the new timeout must leave room for them.
        let interval = self.boot.health.level_interval;
        if new.health.stall_timeout < interval * 2 {
            return refused(format!(
                "health.stall_timeout_ms {} is shorter than twice the running level interval ({} ms); \
                 restart harkd to change both",
                new.health.stall_timeout.as_millis(),
                interval.as_millis()
            ));
        }
        let mut report = ReloadReport {
            needs_restart: restart_keys(&self.boot, &new),
            ..ReloadReport::default()
        };
        self.policy = policy_of(&new);
        self.config = new;
        self.reload_streams(&mut report, now);
        self.reload_devices(&mut report, now);
        self.pending_restart = report.needs_restart.clone();
        report
    }

    /// Configured streams: removed ones stop, new ones start, changed ones
    /// restart; untouched ones are not disturbed.
    fn reload_streams(&mut self, report: &mut ReloadReport, now: Instant) {
        let config = self.config.clone();
        let wanted: BTreeMap<&str, &StreamSpec> = config
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        // Only `record` changed: recording starts or stops, nothing restarts.
        let rerecord: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| e.card.is_none())
            .filter(|(name, e)| {
                wanted
                    .get(name.as_str())
                    .is_some_and(|w| record_only(w, &e.spec))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in rerecord {
            if let Some(w) = wanted.get(name.as_str()) {
                self.rerecord(w);
                report.changed.push(name);
            }
        }
        let gone: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| e.card.is_none())
            .filter(|(name, e)| wanted.get(name.as_str()) != Some(&&e.spec))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &gone {
            if wanted.contains_key(name.as_str()) {
                report.changed.push(name.clone());
            } else {
                report.removed.push(name.clone());
            }
            self.remove_stream(name);
        }
        // A device holding a name a stream now wants gives it up (configured
        // streams' names are reserved); it is named again below.
        let displaced: Vec<u32> = self
            .streams
            .iter()
            .filter(|(name, e)| e.card.is_some() && wanted.contains_key(name.as_str()))
            .filter_map(|(_, e)| e.card)
            .collect();
        for index in displaced {
            if let Some(dev) = self.devices.get(&index).cloned() {
                self.forget(index);
                self.devices.insert(index, dev);
            }
        }
        for spec in &config.streams {
            if !self.streams.contains_key(&spec.name) {
                if !gone.contains(&spec.name) {
                    report.added.push(spec.name.clone());
                }
                self.add_stream(spec.clone(), None, now);
            }
        }
    }

    /// A stream whose `record` alone changed takes the new spec and says so.
    fn rerecord(&mut self, wanted: &StreamSpec) {
        if let Some(e) = self.streams.get_mut(&wanted.name) {
            e.spec.record = wanted.record;
            self.out.push(Effect::Record {
                stream: wanted.name.clone(),
                on: wanted.record,
            });
        }
    }

    /// Devices: each present card is decided again under the new rules, the
    /// devices that hold a name first (so a rule's holder keeps it); a device
    /// whose name or stream settings changed is restarted with the new ones.
    fn reload_devices(&mut self, report: &mut ReloadReport, now: Instant) {
        let mut cards: Vec<(bool, Card)> = self
            .devices
            .values()
            .map(|d| {
                let holds = self.streams.values().any(|s| s.card == Some(d.card.index));
                (!holds, d.card.clone())
            })
            .collect();
        cards.sort_by_key(|(later, c)| {
            (
                *later,
                c.identity.as_ref().map(|i| i.port_path.clone()),
                c.index,
            )
        });
        let old: BTreeMap<u32, Device> = std::mem::take(&mut self.devices);
        let old_streams: BTreeMap<u32, (String, StreamSpec)> = self
            .streams
            .values()
            .filter_map(|s| s.card.map(|c| (c, (s.spec.name.clone(), s.spec.clone()))))
            .collect();
        for (_, card) in cards {
            let index = card.index;
            let named = self.named_devices();
            let reserved = self.reserved();
            let config = self.config.clone();
            let decision = discover::decide_set(
                std::slice::from_ref(&card),
                &named,
                &reserved,
                &config.devices,
                &mut self.ledger,
                self.unix_now,
            )
            .remove(0);
            let before = old.get(&index);
            let unchanged = match (&decision, old_streams.get(&index)) {
                (Decision::Stream { spec, .. }, Some((_, running)))
                    if record_only(spec, running) =>
                {
                    self.rerecord(spec);
                    report.changed.push(spec.name.clone());
                    true
                }
                (Decision::Stream { spec, .. }, Some((_, running))) => {
                    same_stream(spec, running, before)
                }
                // Waiting for its card id: the answer starts the stream.
                (Decision::Stream { .. }, None) => {
                    before.is_some_and(|d| d.state == DeviceState::Pinning)
                }
                (Decision::Ignore { reason }, None)
                | (Decision::Conflict { reason, .. }, None)
                | (Decision::Unplayable { reason, .. }, None) => {
                    before.is_some_and(|d| d.reason.as_ref() == Some(reason))
                }
                _ => false,
            };
            if unchanged {
                if let Some(d) = old.get(&index) {
                    self.devices.insert(index, d.clone());
                }
                continue;
            }
            if let Some((name, _)) = old_streams.get(&index) {
                self.remove_stream(name);
                report.changed.push(name.clone());
            } else if let Decision::Stream { assignment, .. } = &decision {
                report.added.push(assignment.name.clone());
            }
            self.apply_decision(card, decision, now);
        }
        self.out.push(Effect::SaveLedger(self.ledger.clone()));
    }

    // ---- the view ------------------------------------------------------

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            streams: self.streams.values().map(stream_status).collect(),
            devices: self
                .devices
                .iter()
                .map(|(card, d)| device_status(*card, d))
                .collect(),
            deadman: self.deadman.clone(),
            pending_restart: self.pending_restart.clone(),
            bus: self.bus.clone(),
            recording: None,
        }
    }
}

fn refused(why: String) -> ReloadReport {
    ReloadReport {
        refused: Some(why),
        ..ReloadReport::default()
    }
}

/// The running stream of a device equals the one its decision asks for (a
/// card id that could not be pinned keeps its fallback device string).
/// `wanted` differs from `running` in `record` and nothing else.
fn record_only(wanted: &StreamSpec, running: &StreamSpec) -> bool {
    wanted.record != running.record
        && *wanted
            == StreamSpec {
                record: wanted.record,
                ..running.clone()
            }
}

fn same_stream(wanted: &StreamSpec, running: &StreamSpec, dev: Option<&Device>) -> bool {
    if wanted == running {
        return true;
    }
    let pin_failed = dev.is_some_and(|d| {
        d.assignment
            .as_ref()
            .is_some_and(|a| discover::alsa_card_id(&a.name) != d.card_id)
    });
    pin_failed
        && wanted.name == running.name
        && wanted.encoding == running.encoding
        && matches!((&wanted.source, &running.source),
            (Source::Alsa { buffer: a, .. }, Source::Alsa { buffer: b, .. }) if a == b)
}

/// The same device on the same index (a re-announcement, not a new device).
fn same_card(a: &Card, b: &Card) -> bool {
    a.identity == b.identity && a.capture == b.capture && a.capture_pcms == b.capture_pcms
}

fn stream_status(e: &Stream) -> StreamStatus {
    StreamStatus {
        name: e.spec.name.clone(),
        state: match e.health.phase {
            crate::health::Phase::Starting => StreamState::Starting,
            crate::health::Phase::Running => StreamState::Running,
            crate::health::Phase::Stalled { .. } => StreamState::Stalled,
            crate::health::Phase::Failed { .. } => StreamState::Failed,
        },
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
        group: e.group.clone(),
        source: match (&e.spec.source, e.card) {
            (Source::Tone { .. }, _) => SourceKind::Tone,
            (Source::Group(_), _) => SourceKind::Group,
            (_, Some(_)) => SourceKind::Device,
            (_, None) => SourceKind::Alsa,
        },
    }
}

fn device_status(card: u32, d: &Device) -> DeviceStatus {
    let id = d.card.identity.as_ref();
    let capture = &d.card.capture;
    let mut formats: Vec<String> = capture
        .iter()
        .flat_map(|a| a.formats.iter().map(|x| x.as_str().to_string()))
        .collect();
    formats.sort();
    formats.dedup();
    let mut rates: Vec<u32> = capture.iter().flat_map(|a| a.rates.listed()).collect();
    rates.sort_unstable();
    rates.dedup();
    DeviceStatus {
        card,
        status: d.state,
        name: d.assignment.as_ref().map(|a| a.name.clone()),
        reason: d.reason.clone(),
        vendor_product: id.map(Identity::vendor_product),
        serial: id.and_then(|i| i.serial.clone()),
        manufacturer: id.and_then(|i| i.manufacturer.clone()),
        product: id.and_then(|i| i.product.clone()),
        port: id.map(|i| i.port_path.clone()),
        card_id: d.card_id.clone(),
        formats,
        rates,
        channels: capture.iter().map(|a| a.channels).max().unwrap_or(0),
    }
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

/// How often the shell feeds [`Input::Tick`] (and reads the coalesced level
/// readings): the resolution of stall deadlines and retry times.
pub const TICK: Duration = Duration::from_millis(100);
