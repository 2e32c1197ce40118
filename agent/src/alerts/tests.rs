use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::state::{DeadmanStatus, DeviceStatus, StreamStatus};

fn stream(name: &str, state: StreamState, silent: bool, restarts: u64) -> StreamStatus {
    StreamStatus {
        name: name.into(),
        state,
        silent,
        restarts,
        peak_dbfs: Some(if silent { -91.0 } else { -12.0 }),
        ..StreamStatus::default()
    }
}

fn mic(card: u32, name: &str, serial: &str) -> DeviceStatus {
    DeviceStatus {
        card,
        status: DeviceState::Streaming,
        name: Some(name.into()),
        reason: None,
        vendor_product: Some("0d8c:0014".into()),
        serial: Some(serial.into()),
        manufacturer: None,
        product: Some("USB Audio Device".into()),
        port: Some("1-1.2".into()),
        card_id: format!("hark{card}"),
        formats: vec![],
        rates: vec![],
        channels: 1,
    }
}

fn snap(streams: Vec<StreamStatus>, devices: Vec<DeviceStatus>) -> Snapshot {
    Snapshot {
        streams,
        devices,
        ..Snapshot::default()
    }
}

struct Clock {
    t0: Instant,
    w0: SystemTime,
    at: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            t0: Instant::now(),
            w0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_479_800),
            at: Duration::ZERO,
        }
    }
    fn run(&mut self, t: &mut Tracker, s: &Snapshot, advance: Duration) -> Vec<String> {
        self.at += advance;
        t.update(s, self.t0 + self.at, self.w0 + self.at)
            .iter()
            .map(|a| {
                format!(
                    "{}{}{} {}",
                    a.name,
                    match a.active {
                        Some(true) => "+",
                        Some(false) => "-",
                        None => "",
                    },
                    if a.reminder { "(again)" } else { "" },
                    a.stream.as_deref().unwrap_or("")
                )
            })
            .collect()
    }
}

fn all() -> BTreeSet<AlertEvent> {
    AlertEvent::ALL.into_iter().collect()
}

const S: Duration = Duration::from_secs(1);

#[test]
fn one_alert_per_change_not_per_reading() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    let ok = snap(vec![stream("a", StreamState::Running, false, 0)], vec![]);
    assert_eq!(c.run(&mut t, &ok, S), ["agent_started "]);
    assert!(c.run(&mut t, &ok, S).is_empty());
    let quiet = snap(vec![stream("a", StreamState::Running, true, 0)], vec![]);
    assert_eq!(c.run(&mut t, &quiet, S), ["stream_silent+ a"]);
    // Level readings go on; nothing new to say.
    for _ in 0..20 {
        assert!(c.run(&mut t, &quiet, S).is_empty());
    }
    assert_eq!(c.run(&mut t, &ok, S), ["stream_silent- a"]);
    assert!(c.run(&mut t, &ok, S).is_empty());
}

#[test]
fn the_end_of_a_condition_says_how_long_it_lasted() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    let ok = snap(vec![stream("a", StreamState::Running, false, 0)], vec![]);
    let quiet = snap(vec![stream("a", StreamState::Running, true, 0)], vec![]);
    c.run(&mut t, &ok, S);
    c.run(&mut t, &quiet, S);
    c.at += Duration::from_secs(125);
    let end = t.update(&ok, c.t0 + c.at, c.w0 + c.at);
    assert_eq!(end[0].values["lasted_s"], 125);
    assert_eq!(end[0].message, "a has sound again after 2 min");
    assert_eq!(end[0].since, Some(c.w0 + 2 * S));
}

#[test]
fn reminders_while_a_condition_lasts_and_none_when_off() {
    let mut t = Tracker::new(all(), Duration::from_secs(60));
    let mut c = Clock::new();
    let quiet = snap(vec![stream("a", StreamState::Running, true, 0)], vec![]);
    assert_eq!(
        c.run(&mut t, &quiet, S),
        ["agent_started ", "stream_silent+ a"]
    );
    assert!(c.run(&mut t, &quiet, Duration::from_secs(59)).is_empty());
    assert_eq!(c.run(&mut t, &quiet, S), ["stream_silent+(again) a"]);
    assert!(c.run(&mut t, &quiet, Duration::from_secs(30)).is_empty());
    assert_eq!(
        c.run(&mut t, &quiet, Duration::from_secs(30)),
        ["stream_silent+(again) a"]
    );

    let mut never = Tracker::new(all(), Duration::ZERO);
    c.run(&mut never, &quiet, S);
    assert!(
        c.run(&mut never, &quiet, Duration::from_secs(86_400))
            .is_empty()
    );
}

#[test]
fn a_stall_is_one_episode_with_one_restart() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    let run = |r| snap(vec![stream("a", StreamState::Running, false, r)], vec![]);
    let stalled = |r| snap(vec![stream("a", StreamState::Stalled, false, r)], vec![]);
    let starting = |r| snap(vec![stream("a", StreamState::Starting, false, r)], vec![]);
    c.run(&mut t, &run(0), S);
    assert_eq!(c.run(&mut t, &stalled(0), S), ["stream_stalled+ a"]);
    assert_eq!(c.run(&mut t, &starting(1), S), ["stream_restarted a"]);
    // Still not running: the stall goes on, restarts are not news.
    assert!(c.run(&mut t, &stalled(1), S).is_empty());
    assert!(c.run(&mut t, &starting(2), S).is_empty());
    assert_eq!(c.run(&mut t, &run(2), S), ["stream_stalled- a"]);
    // Running briefly, then down again: the same episode of restarts...
    assert_eq!(c.run(&mut t, &stalled(2), S), ["stream_stalled+ a"]);
    assert!(c.run(&mut t, &starting(3), S).is_empty());
    assert_eq!(c.run(&mut t, &run(3), S), ["stream_stalled- a"]);
    // ...until it has run for a minute.
    assert!(c.run(&mut t, &run(3), RESTART_QUIET).is_empty());
    c.run(&mut t, &stalled(3), S);
    assert_eq!(c.run(&mut t, &starting(4), S), ["stream_restarted a"]);
}

#[test]
fn a_failure_begins_and_ends_like_a_stall() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    let s = |st| snap(vec![stream("a", st, false, 0)], vec![]);
    c.run(&mut t, &s(StreamState::Running), S);
    assert_eq!(
        c.run(&mut t, &s(StreamState::Failed), S),
        ["stream_failed+ a"]
    );
    assert!(c.run(&mut t, &s(StreamState::Starting), S).is_empty());
    assert_eq!(
        c.run(&mut t, &s(StreamState::Running), S),
        ["stream_failed- a"]
    );
}

#[test]
fn devices_added_and_removed_with_their_identity() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    c.run(&mut t, &snap(vec![], vec![]), S);
    let one = snap(vec![], vec![mic(1, "mic-1", "A")]);
    assert_eq!(c.run(&mut t, &one, S), ["device_added mic-1"]);
    assert!(c.run(&mut t, &one, S).is_empty());
    let wall = c.w0 + c.at + S;
    let gone = t.update(&snap(vec![], vec![]), c.t0 + c.at + S, wall);
    c.at += S;
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].name, "device_removed");
    assert_eq!(gone[0].device.as_ref().unwrap()["serial"], "A");
    assert_eq!(gone[0].device.as_ref().unwrap()["port"], "1-1.2");
    assert_eq!(
        gone[0].message,
        "mic-1 (USB Audio Device at USB port 1-1.2) was unplugged"
    );
    // Another mic given the same card number is another device.
    c.run(&mut t, &one, S);
    let other = snap(vec![], vec![mic(1, "mic-2", "B")]);
    assert_eq!(
        c.run(&mut t, &other, S),
        ["device_removed mic-1", "device_added mic-2"]
    );
    // Cards that are not microphones are not news.
    let mut hdmi = mic(2, "x", "C");
    hdmi.status = DeviceState::Ignored;
    hdmi.name = None;
    assert!(
        c.run(&mut t, &snap(vec![], vec![mic(1, "mic-2", "B"), hdmi]), S)
            .is_empty()
    );
}

#[test]
fn a_stream_unplugged_ends_its_conditions_without_a_word() {
    let mut t = Tracker::new(all(), Duration::from_secs(60));
    let mut c = Clock::new();
    c.run(
        &mut t,
        &snap(vec![stream("a", StreamState::Running, true, 0)], vec![]),
        S,
    );
    assert!(c.run(&mut t, &snap(vec![], vec![]), S).is_empty());
    assert!(
        c.run(&mut t, &snap(vec![], vec![]), Duration::from_secs(600))
            .is_empty()
    );
}

#[test]
fn the_deadman_is_told_on_each_change_and_not_when_disabled() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    let d = |state| Snapshot {
        deadman: DeadmanStatus {
            enabled: true,
            state,
            ..DeadmanStatus::default()
        },
        ..Snapshot::default()
    };
    // The state at start is in agent_started, not an alert of its own.
    assert_eq!(
        c.run(&mut t, &d(DeadmanState::Armed), S),
        ["agent_started "]
    );
    assert!(c.run(&mut t, &d(DeadmanState::Armed), S).is_empty());
    assert_eq!(
        c.run(&mut t, &d(DeadmanState::Refusing), S),
        ["deadman_refusing "]
    );
    assert_eq!(
        c.run(&mut t, &d(DeadmanState::Armed), S),
        ["deadman_armed "]
    );
    let mut off = Tracker::new(all(), Duration::ZERO);
    assert_eq!(c.run(&mut off, &Snapshot::default(), S), ["agent_started "]);
}

#[test]
fn only_the_events_asked_for() {
    let mut t = Tracker::new(
        [AlertEvent::StreamSilent].into_iter().collect(),
        Duration::ZERO,
    );
    let mut c = Clock::new();
    let quiet = snap(
        vec![stream("a", StreamState::Running, true, 0)],
        vec![mic(1, "a", "A")],
    );
    assert_eq!(c.run(&mut t, &quiet, S), ["stream_silent+ a"]);
}

#[test]
fn the_json_body_is_the_documented_one_and_text_is_one_line() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    c.run(
        &mut t,
        &snap(
            vec![stream("a", StreamState::Running, false, 0)],
            vec![mic(1, "a", "A")],
        ),
        S,
    );
    c.at += S;
    let quiet = snap(
        vec![stream("a", StreamState::Running, true, 0)],
        vec![mic(1, "a", "A")],
    );
    let a = t.update(&quiet, c.t0 + c.at, c.w0 + c.at).remove(0);
    let (bytes, ct) = body(&a, AlertFormat::Json, "attic", 7);
    assert_eq!(ct, "application/json");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["event"], "stream_silent");
    assert_eq!(v["active"], true);
    assert_eq!(v["reminder"], false);
    assert_eq!(v["stream"], "a");
    assert_eq!(v["device"]["vendor_product"], "0d8c:0014");
    assert_eq!(v["values"]["peak_dbfs"], -91.0);
    assert_eq!(v["time"], "2026-12-05T14:10:02Z");
    assert_eq!(v["since"], "2026-12-05T14:10:02Z");
    assert_eq!(v["host"], "attic");
    assert_eq!(v["seq"], 7);
    assert_eq!(v["message"], "a is silent (peak -91.0 dBFS)");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "active", "agent", "device", "event", "host", "message", "reminder", "seq", "since",
            "stream", "time", "values"
        ]
    );
    let (text, ct) = body(&a, AlertFormat::Text, "attic", 7);
    assert_eq!(ct, "text/plain; charset=utf-8");
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "hark attic: a is silent (peak -91.0 dBFS)"
    );
}

#[test]
fn recording_paused_begins_and_ends_per_stream() {
    use crate::state::{DiskStatus, OnDisk, RecorderStatus, RecordingStatus};
    let rec = |state: RecorderState, reason: &str| Snapshot {
        recording: Some(RecordingStatus {
            disk: DiskStatus {
                free_bytes: 1024,
                space_ok: state != RecorderState::Paused,
                ..DiskStatus::default()
            },
            streams: [(
                "a".to_string(),
                RecorderStatus {
                    state,
                    reason: reason.into(),
                    file: None,
                    bytes_written: 0,
                    segments_started: 0,
                    on_disk: OnDisk::default(),
                },
            )]
            .into_iter()
            .collect(),
        }),
        ..Snapshot::default()
    };
    let mut t = Tracker::new(all(), Duration::ZERO);
    let mut c = Clock::new();
    c.run(&mut t, &rec(RecorderState::Recording, ""), S);
    let paused = rec(RecorderState::Paused, "disk full: 1 KiB free");
    c.at += S;
    let a = t.update(&paused, c.t0 + c.at, c.w0 + c.at);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].name.as_str(), a[0].active),
        ("recording_paused", Some(true))
    );
    assert_eq!(a[0].values["reason"], "disk full: 1 KiB free");
    assert_eq!(a[0].values["free_bytes"], 1024);
    assert!(c.run(&mut t, &paused, S).is_empty());
    // Waiting for audio is not a pause; recording again ends it.
    assert_eq!(
        c.run(&mut t, &rec(RecorderState::Recording, ""), S),
        ["recording_paused- a"]
    );
    assert!(
        c.run(&mut t, &rec(RecorderState::Waiting, ""), S)
            .is_empty()
    );
    // Recording turned off while paused: ended without a word.
    c.run(&mut t, &paused, S);
    assert!(c.run(&mut t, &Snapshot::default(), S).is_empty());
}

#[test]
fn microphones_present_at_start_are_in_agent_started_not_announced_one_by_one() {
    let mut t = Tracker::new(all(), Duration::ZERO);
    let now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_479_800);
    let two = snap(vec![], vec![mic(1, "a", "A"), mic(2, "b", "B")]);
    let first = t.update(&two, now, wall);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].name, "agent_started");
    assert_eq!(first[0].values["devices"][1]["serial"], "B");
    assert_eq!(
        first[0].message,
        format!(
            "harkd {} started with 0 streams and 2 microphones",
            env!("CARGO_PKG_VERSION")
        )
    );
    // Unplugged later: that is news.
    let gone = t.update(&snap(vec![], vec![mic(1, "a", "A")]), now + S, wall + S);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].name, "device_removed");
    assert_eq!(gone[0].stream.as_deref(), Some("b"));
}
