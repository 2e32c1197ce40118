//! Alerts to webhooks (`[[alert]]`): what changed, worth telling a person.
//!
//! Pure and synchronous: a [`Tracker`] per webhook reads each published
//! [`Snapshot`] and returns the alerts it calls for, one per change of state
//! (a stream going silent and its sound coming back, not every level reading),
//! with a reminder while a condition lasts. [`body`] writes an alert as the
//! documented JSON or as one line of text. Sending is `send.rs`: its own
//! threads, a bounded queue, never the agent's time.

pub mod send;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::config::{AlertEvent, AlertFormat};
use crate::state::{DeadmanState, DeviceState, DeviceStatus, RecorderState, Snapshot, StreamState};

/// A stream that restarted must then run this long before another restart
/// is a new episode (and a new `stream_restarted`): a stream failing every
/// backoff period is one alert, not one a minute.
pub const RESTART_QUIET: Duration = Duration::from_secs(60);

/// One alert, before it is written for a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub event: AlertEvent,
    /// The body's `event`: the event's name, or for the deadman
    /// `deadman_<state>`.
    pub name: String,
    /// Conditions: true when it begins (and in reminders), false when it ends.
    /// `None` for one-off events (added, removed, restarted, started, deadman).
    pub active: Option<bool>,
    pub reminder: bool,
    /// When the condition began.
    pub since: Option<SystemTime>,
    pub time: SystemTime,
    pub stream: Option<String>,
    pub device: Option<Value>,
    pub values: Value,
    /// For people: one sentence.
    pub message: String,
}

/// A condition now in force, for its end and its reminders.
#[derive(Debug, Clone)]
struct Condition {
    since: SystemTime,
    began: Instant,
    told: Instant,
}

#[derive(Debug, Clone, Default)]
struct StreamMemo {
    restarts: u64,
    /// Restarted and not yet running for [`RESTART_QUIET`] since.
    in_episode: bool,
    running_since: Option<Instant>,
}

/// What one webhook has been told, to tell it only what changed.
pub struct Tracker {
    events: BTreeSet<AlertEvent>,
    remind: Duration,
    started: bool,
    conditions: BTreeMap<(AlertEvent, String), Condition>,
    streams: HashMap<String, StreamMemo>,
    /// Devices announced (not ignored), by card.
    devices: BTreeMap<u32, DeviceStatus>,
    deadman: Option<DeadmanState>,
}

impl Tracker {
    /// `remind` zero: no reminders.
    pub fn new(events: BTreeSet<AlertEvent>, remind: Duration) -> Tracker {
        Tracker {
            events,
            remind,
            started: false,
            conditions: BTreeMap::new(),
            streams: HashMap::new(),
            devices: BTreeMap::new(),
            deadman: None,
        }
    }

    /// The alerts `snap` calls for, given everything seen before; `now` and
    /// `wall` are the same moment on the monotonic and the wall clock.
    pub fn update(&mut self, snap: &Snapshot, now: Instant, wall: SystemTime) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut emit = Emit {
            out: &mut out,
            wall,
        };
        if !self.started {
            self.started = true;
            self.started_with(snap, &mut emit);
        }
        self.devices(snap, &mut emit);
        self.stream_conditions(snap, now, &mut emit);
        self.restarts(snap, now, &mut emit);
        self.recording(snap, now, &mut emit);
        self.deadman(snap, &mut emit);
        self.reminders(snap, now, &mut emit);
        out.retain(|a| self.events.contains(&a.event));
        out
    }

    /// The first snapshot (at READY): one `agent_started` that lists the
    /// streams, the microphones already there and the deadman's state, which
    /// are not announced one by one (every start would repeat them).
    fn started_with(&mut self, snap: &Snapshot, emit: &mut Emit<'_>) {
        let streams: Vec<&str> = snap.streams.iter().map(|s| s.name.as_str()).collect();
        let mics: Vec<&DeviceStatus> = snap
            .devices
            .iter()
            .filter(|d| d.status != DeviceState::Ignored)
            .collect();
        for d in &mics {
            self.devices.insert(d.card, (*d).clone());
        }
        self.deadman = Some(snap.deadman.state);
        emit.one(
            AlertEvent::AgentStarted,
            None,
            None,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "streams": streams,
                "devices": mics.iter().map(|d| identity(d)).collect::<Vec<_>>(),
                "deadman": snap.deadman.state.as_str(),
            }),
            format!(
                "harkd {} started with {} streams and {} microphones",
                env!("CARGO_PKG_VERSION"),
                streams.len(),
                mics.len()
            ),
        );
    }

    fn devices(&mut self, snap: &Snapshot, emit: &mut Emit<'_>) {
        let now: BTreeMap<u32, &DeviceStatus> = snap
            .devices
            .iter()
            .filter(|d| d.status != DeviceState::Ignored)
            .map(|d| (d.card, d))
            .collect();
        let gone: Vec<u32> = self
            .devices
            .iter()
            .filter(|(card, old)| now.get(card).is_none_or(|d| !same_device(old, d)))
            .map(|(card, _)| *card)
            .collect();
        for card in gone {
            if let Some(old) = self.devices.remove(&card) {
                emit.one(
                    AlertEvent::DeviceRemoved,
                    old.name.clone(),
                    Some(identity(&old)),
                    json!({ "card": old.card }),
                    format!("{} was unplugged", describe(&old)),
                );
            }
        }
        for (card, d) in now {
            // Known: its name or state may change (pinning, then streaming).
            if self.devices.insert(card, d.clone()).is_some() {
                continue;
            }
            emit.one(
                AlertEvent::DeviceAdded,
                d.name.clone(),
                Some(identity(d)),
                json!({ "card": d.card, "state": d.status.as_str(), "reason": d.reason }),
                format!("{} was plugged in ({})", describe(d), d.status.as_str()),
            );
        }
    }

    fn stream_conditions(&mut self, snap: &Snapshot, now: Instant, emit: &mut Emit<'_>) {
        let present: BTreeSet<&str> = snap.streams.iter().map(|s| s.name.as_str()).collect();
        // A stream gone (its mic unplugged, removed by a reload) ends its
        // conditions without a word: "device removed" says what happened.
        self.conditions.retain(|(event, subject), _| {
            !matches!(
                event,
                AlertEvent::StreamSilent | AlertEvent::StreamStalled | AlertEvent::StreamFailed
            ) || present.contains(subject.as_str())
        });
        for s in &snap.streams {
            let silent = s.silent && s.state == StreamState::Running;
            self.condition(
                emit,
                (snap, now),
                (AlertEvent::StreamSilent, &s.name),
                silent,
                || json!({ "peak_dbfs": s.peak_dbfs, "rms_dbfs": s.rms_dbfs }),
                |on, lasted| match (on, lasted) {
                    (true, _) => format!(
                        "{} is silent (peak {})",
                        s.name,
                        s.peak_dbfs
                            .map_or("unknown".into(), |p| format!("{p:.1} dBFS"))
                    ),
                    (false, d) => format!("{} has sound again after {}", s.name, human(d)),
                },
            );
            for (event, state, what) in [
                (
                    AlertEvent::StreamStalled,
                    StreamState::Stalled,
                    "stalled: no audio is coming",
                ),
                (AlertEvent::StreamFailed, StreamState::Failed, "failed"),
            ] {
                let key = (event, s.name.clone());
                let on = s.state == state
                    || (self.conditions.contains_key(&key) && s.state != StreamState::Running);
                self.condition(
                    emit,
                    (snap, now),
                    (event, &s.name),
                    on,
                    || json!({ "state": s.state.as_str(), "last_error": s.last_error, "restarts": s.restarts }),
                    |on, lasted| {
                        if on {
                            format!("{} {what}", s.name)
                        } else {
                            format!("{} runs again after {}", s.name, human(lasted))
                        }
                    },
                );
            }
        }
    }

    fn restarts(&mut self, snap: &Snapshot, now: Instant, emit: &mut Emit<'_>) {
        let present: BTreeSet<&str> = snap.streams.iter().map(|s| s.name.as_str()).collect();
        self.streams
            .retain(|name, _| present.contains(name.as_str()));
        for s in &snap.streams {
            let memo = self
                .streams
                .entry(s.name.clone())
                .or_insert_with(|| StreamMemo {
                    restarts: s.restarts,
                    ..StreamMemo::default()
                });
            if s.state == StreamState::Running {
                let since = *memo.running_since.get_or_insert(now);
                if now.duration_since(since) >= RESTART_QUIET {
                    memo.in_episode = false;
                }
            } else {
                memo.running_since = None;
            }
            if s.restarts > memo.restarts && !memo.in_episode {
                memo.in_episode = true;
                let device = device_of(snap, &s.name);
                emit.one(
                    AlertEvent::StreamRestarted,
                    Some(s.name.clone()),
                    device,
                    json!({ "restarts": s.restarts, "last_error": s.last_error }),
                    format!(
                        "{} was restarted ({})",
                        s.name,
                        s.last_error.as_deref().unwrap_or("no audio")
                    ),
                );
            }
            memo.restarts = s.restarts;
        }
    }

    fn recording(&mut self, snap: &Snapshot, now: Instant, emit: &mut Emit<'_>) {
        let recorders = snap.recording.as_ref().map(|r| &r.streams);
        self.conditions.retain(|(event, subject), _| {
            *event != AlertEvent::RecordingPaused
                || recorders.is_some_and(|r| r.contains_key(subject))
        });
        let Some(rec) = &snap.recording else {
            return;
        };
        for (name, r) in &rec.streams {
            self.condition(
                emit,
                (snap, now),
                (AlertEvent::RecordingPaused, name),
                r.state == RecorderState::Paused,
                || json!({ "reason": r.reason, "free_bytes": rec.disk.free_bytes, "directory": rec.disk.directory }),
                |on, lasted| {
                    if on {
                        format!("recording {name} paused: {}", r.reason)
                    } else {
                        format!("recording {name} resumed after {}", human(lasted))
                    }
                },
            );
        }
    }

    fn deadman(&mut self, snap: &Snapshot, emit: &mut Emit<'_>) {
        let d = &snap.deadman;
        let before = self.deadman.replace(d.state);
        let changed = before.is_none_or(|b| b != d.state);
        if changed && d.state != DeadmanState::Disabled {
            emit.push(Alert {
                event: AlertEvent::Deadman,
                name: format!("deadman_{}", d.state.as_str()),
                active: None,
                reminder: false,
                since: None,
                time: emit.wall,
                stream: None,
                device: None,
                values: json!({
                    "state": d.state.as_str(),
                    "reboots_in_window": d.reboots_in_window,
                    "max_reboots": d.max_reboots,
                    "window_s": d.window_s,
                    "detail": d.detail,
                }),
                message: format!(
                    "the reboot deadman is {}{}",
                    d.state.as_str(),
                    d.detail
                        .as_deref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                ),
            });
        }
    }

    fn reminders(&mut self, snap: &Snapshot, now: Instant, emit: &mut Emit<'_>) {
        if self.remind.is_zero() {
            return;
        }
        for ((event, subject), c) in &mut self.conditions {
            if now.duration_since(c.told) < self.remind {
                continue;
            }
            c.told = now;
            let lasted = now.duration_since(c.began);
            emit.push(Alert {
                event: *event,
                name: event.as_str().into(),
                active: Some(true),
                reminder: true,
                since: Some(c.since),
                time: emit.wall,
                stream: Some(subject.clone()),
                device: device_of(snap, subject),
                values: json!({ "lasted_s": lasted.as_secs() }),
                message: format!("still {}: {subject}, for {}", event.as_str(), human(lasted)),
            });
        }
    }

    /// A condition on `key` (an event, and the stream it is about) is `on`
    /// now: says so when that changed. `values` is only built then.
    fn condition(
        &mut self,
        emit: &mut Emit<'_>,
        (snap, now): (&Snapshot, Instant),
        key: (AlertEvent, &str),
        on: bool,
        values: impl Fn() -> Value,
        message: impl Fn(bool, Duration) -> String,
    ) {
        let (event, subject) = key;
        let k = (event, subject.to_string());
        match (on, self.conditions.get(&k).cloned()) {
            (true, None) => {
                self.conditions.insert(
                    k,
                    Condition {
                        since: emit.wall,
                        began: now,
                        told: now,
                    },
                );
                emit.push(Alert {
                    event,
                    name: event.as_str().into(),
                    active: Some(true),
                    reminder: false,
                    since: Some(emit.wall),
                    time: emit.wall,
                    stream: Some(subject.into()),
                    device: device_of(snap, subject),
                    values: values(),
                    message: message(true, Duration::ZERO),
                });
            }
            (false, Some(c)) => {
                self.conditions.remove(&k);
                let lasted = now.duration_since(c.began);
                let mut values = values();
                if let Value::Object(m) = &mut values {
                    m.insert("lasted_s".into(), json!(lasted.as_secs()));
                }
                emit.push(Alert {
                    event,
                    name: event.as_str().into(),
                    active: Some(false),
                    reminder: false,
                    since: Some(c.since),
                    time: emit.wall,
                    stream: Some(subject.into()),
                    device: device_of(snap, subject),
                    values,
                    message: message(false, lasted),
                });
            }
            _ => {}
        }
    }
}

struct Emit<'a> {
    out: &'a mut Vec<Alert>,
    wall: SystemTime,
}

impl Emit<'_> {
    fn push(&mut self, a: Alert) {
        self.out.push(a);
    }

    fn one(
        &mut self,
        event: AlertEvent,
        stream: Option<String>,
        device: Option<Value>,
        values: Value,
        message: String,
    ) {
        self.out.push(Alert {
            event,
            name: event.as_str().into(),
            active: None,
            reminder: false,
            since: None,
            time: self.wall,
            stream,
            device,
            values,
            message,
        });
    }
}

/// The same physical device (a card number is reused by the next one plugged).
fn same_device(a: &DeviceStatus, b: &DeviceStatus) -> bool {
    a.vendor_product == b.vendor_product && a.serial == b.serial && a.port == b.port
}

fn identity(d: &DeviceStatus) -> Value {
    json!({
        "name": d.name,
        "card": d.card,
        "card_id": d.card_id,
        "vendor_product": d.vendor_product,
        "serial": d.serial,
        "manufacturer": d.manufacturer,
        "product": d.product,
        "port": d.port,
    })
}

fn device_of(snap: &Snapshot, stream: &str) -> Option<Value> {
    snap.devices
        .iter()
        .find(|d| d.name.as_deref() == Some(stream))
        .map(identity)
}

/// "Microphone mic-2 (0d8c:0014 at 1-1.2)".
fn describe(d: &DeviceStatus) -> String {
    let what = d
        .product
        .clone()
        .or_else(|| d.vendor_product.clone())
        .unwrap_or_else(|| d.card_id.clone());
    let mut s = match &d.name {
        Some(n) => format!("{n} ({what}"),
        None => format!("card {} ({what}", d.card),
    };
    if let Some(port) = &d.port {
        s.push_str(&format!(" at USB port {port}"));
    }
    s.push(')');
    s
}

/// "45 s", "12 min", "3 h 5 min".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// The body for one webhook, and its content type.
pub fn body(alert: &Alert, format: AlertFormat, host: &str, seq: u64) -> (Vec<u8>, &'static str) {
    match format {
        AlertFormat::Json => {
            let v = json!({
                "event": alert.name,
                "active": alert.active,
                "reminder": alert.reminder,
                "stream": alert.stream,
                "device": alert.device,
                "values": alert.values,
                "message": alert.message,
                "since": alert.since.map(crate::recording::rfc3339),
                "time": crate::recording::rfc3339(alert.time),
                "host": host,
                "agent": format!("harkd {}", env!("CARGO_PKG_VERSION")),
                "seq": seq,
            });
            (v.to_string().into_bytes(), "application/json")
        }
        AlertFormat::Text => {
            let again = if alert.reminder { " (still)" } else { "" };
            (
                format!("hark {host}: {}{again}", alert.message).into_bytes(),
                "text/plain; charset=utf-8",
            )
        }
    }
}

/// This machine's name, for the body's `host`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests;
