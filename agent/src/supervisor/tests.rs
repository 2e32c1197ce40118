//! Table tests of the supervisor's decisions: the pure machine, fed made-up
//! cards and instants. No GStreamer, no D-Bus, no files, no sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::machine::{Answer, Effect, Input, Machine};
use crate::config::{Config, Source};
use crate::devices::asound::{AltSetting, Rates, SampleFormat};
use crate::devices::identity::Identity;
use crate::devices::naming::Ledger;
use crate::devices::scan::Card;
use crate::state::{DeviceState, StreamState};

const BASE: &str = "[rtsp]\nport = 8554\n\n[devices]\nstate_dir = \"/nonexistent\"\nalsa_device = \"hw:CARD={card_id},DEV={pcm}\"\n";

fn config(text: &str) -> Arc<Config> {
    Arc::new(
        Config::parse_bytes(std::path::Path::new("hark.toml"), text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn mic(index: u32, port: &str, serial: Option<&str>) -> Card {
    Card {
        index,
        card_id: "Device".into(),
        identity: Some(Identity {
            vendor_id: 0x0d8c,
            product_id: 0x0014,
            serial: serial.map(str::to_string),
            manufacturer: None,
            product: Some("USB Audio Device".into()),
            port_path: port.into(),
            id_path: None,
        }),
        title: None,
        capture: vec![AltSetting {
            interface: 1,
            altset: 1,
            formats: vec![SampleFormat::S16Le],
            channels: 1,
            rates: Rates::List(vec![48_000]),
            bits: Some(16),
        }],
        capture_pcms: vec![0],
    }
}

/// A machine and a clock that only moves when told to.
struct Rig {
    m: Machine,
    t0: Instant,
    now: Instant,
}

impl Rig {
    fn new(text: &str) -> Rig {
        Rig::with_ledger(text, Ledger::default())
    }

    fn with_ledger(text: &str, ledger: Ledger) -> Rig {
        let t0 = Instant::now();
        let mut m = Machine::new(config(text), ledger, 7);
        m.handle(Input::Start, t0);
        Rig { m, t0, now: t0 }
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.m.handle(input, self.now).effects
    }

    fn at(&mut self, secs: f64) -> &mut Rig {
        self.now = self.t0 + Duration::from_secs_f64(secs);
        self
    }

    /// Plugs a card and answers its pin (when one is asked) with `pin`.
    fn plug(&mut self, card: Card, pin: Result<(), String>) -> Vec<Effect> {
        let mut out = self.feed(Input::Added(card));
        out.extend(self.answer_pins(&out.clone(), pin));
        out
    }

    fn answer_pins(&mut self, effects: &[Effect], pin: Result<(), String>) -> Vec<Effect> {
        let mut out = Vec::new();
        for e in effects {
            if let Effect::PinCardId { card, id } = e {
                out.extend(self.feed(Input::Pinned {
                    card: *card,
                    id: id.clone(),
                    result: pin.clone(),
                }));
            }
        }
        out
    }

    fn streams(&self) -> Vec<(String, StreamState)> {
        self.m
            .snapshot()
            .streams
            .into_iter()
            .map(|s| (s.name, s.state))
            .collect()
    }

    fn device(&self, card: u32) -> crate::state::DeviceStatus {
        self.m
            .snapshot()
            .devices
            .into_iter()
            .find(|d| d.card == card)
            .unwrap_or_else(|| panic!("no card {card}"))
    }

    fn names(&self) -> Vec<String> {
        self.streams().into_iter().map(|(n, _)| n).collect()
    }

    fn level(&mut self, stream: &str, generation: u64) -> Vec<Effect> {
        self.feed(Input::Level {
            stream: stream.into(),
            generation,
            peak_dbfs: -10.0,
            rms_dbfs: -13.0,
            bytes_sent: 0,
            group: None,
        })
    }
}

fn started(effects: &[Effect]) -> Vec<(String, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start {
                spec, generation, ..
            } => Some((spec.name.clone(), *generation)),
            _ => None,
        })
        .collect()
}

fn unmounted(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Unmount(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn alsa_device(effects: &[Effect]) -> String {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Start { spec, .. } => match &spec.source {
                Source::Alsa { device, .. } => Some(device.clone()),
                Source::Tone { .. } | Source::Group(_) => None,
            },
            _ => None,
        })
        .expect("an ALSA start")
}

#[test]
fn plug_unplug_and_replug_keep_the_name() {
    let mut r = Rig::new(BASE);
    let out = r.plug(mic(1, "1-1.4", Some("SN1")), Ok(()));
    // Name, pin to the name, ledger saved, mount, start.
    assert!(out.contains(&Effect::PinCardId {
        card: 1,
        id: "usb_audio_devic".into()
    }));
    assert!(out.iter().any(|e| matches!(e, Effect::SaveLedger(_))));
    assert_eq!(started(&out), vec![("usb-audio-device".into(), 1)]);
    assert_eq!(alsa_device(&out), "hw:CARD=usb_audio_devic,DEV=0");
    assert_eq!(r.device(1).status, DeviceState::Streaming);

    let out = r.feed(Input::Removed { index: 1 });
    assert_eq!(unmounted(&out), vec!["usb-audio-device".to_string()]);
    assert!(r.streams().is_empty() && r.m.snapshot().devices.is_empty());

    // Back on another port and card number: the serial keeps the name.
    let out = r.plug(mic(3, "1-1.2", Some("SN1")), Ok(()));
    assert_eq!(started(&out), vec![("usb-audio-device".into(), 1)]);
}

/// The last ledger the machine asked to save.
fn saved(effects: &[Effect]) -> Ledger {
    effects
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::SaveLedger(l) => Some(l.clone()),
            _ => None,
        })
        .expect("a saved ledger")
}

fn by_port(r: &Rig) -> Vec<(Option<String>, Option<String>)> {
    let mut v: Vec<_> =
        r.m.snapshot()
            .devices
            .into_iter()
            .map(|d| (d.port, d.name))
            .collect();
    v.sort();
    v
}

#[test]
fn twins_keep_their_names_between_coldplug_and_hotplug() {
    for serial in [None, Some("DUP")] {
        // Named at boot, then plugged one at a time (the higher port first).
        let mut r = Rig::new(BASE);
        let out = r.feed(Input::Coldplug(vec![
            mic(2, "1-1.3", serial),
            mic(1, "1-1.2", serial),
        ]));
        r.answer_pins(&out, Ok(()));
        let cold = by_port(&r);
        assert_eq!(
            cold,
            vec![
                (Some("1-1.2".into()), Some("usb-audio-device".into())),
                (Some("1-1.3".into()), Some("usb-audio-device-2".into()))
            ]
        );
        let mut hot = Rig::with_ledger(BASE, saved(&out));
        hot.plug(mic(7, "1-1.3", serial), Ok(()));
        hot.plug(mic(8, "1-1.2", serial), Ok(()));
        assert_eq!(
            by_port(&hot),
            cold,
            "serial {serial:?}: hotplug after coldplug"
        );

        // Plugged one at a time first, then named at boot.
        let mut r = Rig::new(BASE);
        let mut out = r.plug(mic(7, "1-1.3", serial), Ok(()));
        out.extend(r.plug(mic(8, "1-1.2", serial), Ok(())));
        let first = by_port(&r);
        let mut boot = Rig::with_ledger(BASE, saved(&out));
        let out = boot.feed(Input::Coldplug(vec![
            mic(1, "1-1.2", serial),
            mic(2, "1-1.3", serial),
        ]));
        boot.answer_pins(&out, Ok(()));
        assert_eq!(
            by_port(&boot),
            first,
            "serial {serial:?}: coldplug after hotplug"
        );
    }
}

#[test]
fn a_rule_matching_two_devices_streams_one_and_reports_the_other() {
    let text = format!("{BASE}\n[[device]]\nname = \"attic\"\nvendor_product = \"0d8c:0014\"\n");
    let mut r = Rig::new(&text);
    let out = r.feed(Input::Coldplug(vec![
        mic(1, "1-1.3", None),
        mic(2, "1-1.2", None),
    ]));
    r.answer_pins(&out, Ok(()));
    assert_eq!(r.names(), vec!["attic".to_string()]);
    assert_eq!(r.device(2).status, DeviceState::Streaming);
    let other = r.device(1);
    assert_eq!(other.status, DeviceState::Conflict);
    assert!(
        other.reason.as_deref().unwrap().contains("port 1-1.2"),
        "{other:?}"
    );
    assert!(r.m.snapshot().summary().contains("1 device name conflict"));
    // The holder leaves: the other device gets the name and streams.
    let out = r.feed(Input::Removed { index: 2 });
    let out2 = r.answer_pins(&out, Ok(()));
    assert_eq!(unmounted(&out), vec!["attic".to_string()]);
    assert_eq!(
        started(&[out, out2].concat()),
        vec![("attic".to_string(), 1)]
    );
    assert_eq!(r.device(1).status, DeviceState::Streaming);
}

#[test]
fn a_failed_pin_captures_through_the_id_the_card_has() {
    let mut r = Rig::new(BASE);
    let out = r.feed(Input::Added(mic(1, "1-1.4", None)));
    // Nothing starts before the pin is answered.
    assert!(started(&out).is_empty());
    assert_eq!(r.device(1).status, DeviceState::Pinning);
    let out = r.answer_pins(&out, Err("Permission denied".into()));
    assert_eq!(alsa_device(&out), "hw:CARD=Device,DEV=0");
    let d = r.device(1);
    assert_eq!(
        (d.status, d.card_id.as_str()),
        (DeviceState::Streaming, "Device")
    );
}

#[test]
fn a_card_gone_before_it_was_opened_is_a_removal_not_a_retry() {
    let mut r = Rig::new(BASE);
    r.plug(mic(1, "1-1.4", None), Ok(()));
    let out = r.at(0.2).feed(Input::Failed {
        stream: "usb-audio-device".into(),
        generation: 1,
        reason: "Could not open audio device for recording".into(),
        card_present: false,
    });
    assert_eq!(unmounted(&out), vec!["usb-audio-device".to_string()]);
    assert!(r.m.snapshot().devices.is_empty());
    // Nothing is retried against the missing device.
    assert!(started(&r.at(30.0).feed(Input::Tick)).is_empty());
    // The same failure with the card present is retried after the backoff.
    r.plug(mic(1, "1-1.4", None), Ok(()));
    let out = r.at(30.1).feed(Input::Failed {
        stream: "usb-audio-device".into(),
        generation: 1,
        reason: "busy".into(),
        card_present: true,
    });
    assert!(unmounted(&out).is_empty());
    assert!(
        started(&r.at(45.0).feed(Input::Tick))
            .iter()
            .any(|(_, g)| *g == 2)
    );
}

#[test]
fn announcements_again_change_nothing_but_another_device_on_the_index_does() {
    let mut r = Rig::new(BASE);
    r.plug(mic(1, "1-1.4", Some("A")), Ok(()));
    assert!(r.feed(Input::Added(mic(1, "1-1.4", Some("A")))).is_empty());
    assert!(
        r.feed(Input::Coldplug(vec![mic(1, "1-1.4", Some("A"))]))
            .is_empty()
    );
    // A different mic on index 1 (its remove event was lost).
    let mut other = mic(1, "1-1.2", Some("B"));
    other.identity.as_mut().unwrap().product = Some("Other Mic".into());
    let out = r.plug(other, Ok(()));
    assert_eq!(unmounted(&out), vec!["usb-audio-device".to_string()]);
    assert_eq!(started(&out), vec![("other-mic".to_string(), 1)]);
}

#[test]
fn a_stall_stops_the_pipeline_and_backs_off() {
    let text = "[rtsp]\nport = 8554\n\n[health]\nstall_timeout_ms = 3000\n\n[restart]\ninitial_ms = 1000\nmax_ms = 4000\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\n";
    let mut r = Rig::new(text);
    r.at(0.5).level("tone", 1);
    assert_eq!(r.streams(), vec![("tone".into(), StreamState::Running)]);
    assert!(r.at(3.4).feed(Input::Tick).is_empty(), "not yet stalled");
    let out = r.at(3.6).feed(Input::Tick);
    assert!(out.contains(&Effect::Stop {
        stream: "tone".into(),
        generation: 1
    }));
    assert_eq!(r.streams()[0].1, StreamState::Stalled);
    // Retried after the backoff (1 s, with jitter), as generation 2.
    assert!(started(&r.at(3.7).feed(Input::Tick)).is_empty());
    let out = r.at(5.0).feed(Input::Tick);
    assert_eq!(started(&out), vec![("tone".into(), 2)]);
    // A reading from the old pipeline is stale and changes nothing.
    r.at(5.1).level("tone", 1);
    assert_eq!(r.streams()[0].1, StreamState::Starting);
    // Stalling again doubles the wait.
    let out = r.at(8.2).feed(Input::Tick);
    assert!(out.contains(&Effect::Stop {
        stream: "tone".into(),
        generation: 2
    }));
    assert!(started(&r.at(9.5).feed(Input::Tick)).is_empty());
    assert_eq!(
        started(&r.at(11.0).feed(Input::Tick)),
        vec![("tone".into(), 3)]
    );
    assert_eq!(r.m.snapshot().streams[0].stalls, 2);
}

fn reload(r: &mut Rig, text: &str) -> (crate::state::ReloadReport, Vec<Effect>) {
    let out = r.m.handle(Input::Reload(Ok(config(text))), r.now);
    let pins = r.answer_pins(&out.effects, Ok(()));
    match out.answer {
        Answer::Reload(rep) => (rep, [out.effects, pins].concat()),
        a => panic!("{a:?}"),
    }
}

fn recorded(out: &[Effect]) -> Vec<(String, bool)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Record { stream, on } => Some((stream.clone(), *on)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reload_that_changes_only_record_restarts_nothing() {
    let text = |defaults: bool, own: bool| {
        format!(
            "{BASE}\n[defaults]\nrecord = {defaults}\n\n[[stream]]\nname = \"a\"\nsource = \"tone\"\nrecord = {own}\n"
        )
    };
    let mut r = Rig::new(&text(false, false));
    r.plug(mic(1, "1-1.4", None), Ok(()));
    let (rep, out) = reload(&mut r, &text(true, true));
    assert!(
        unmounted(&out).is_empty() && started(&out).is_empty(),
        "{out:?}"
    );
    assert_eq!(
        recorded(&out),
        vec![("a".into(), true), ("usb-audio-device".into(), true)]
    );
    assert_eq!(
        rep.changed,
        vec!["a".to_string(), "usb-audio-device".into()]
    );
    // The same again: nothing at all.
    let (rep, out) = reload(&mut r, &text(true, true));
    assert!(
        recorded(&out).is_empty() && rep.changed.is_empty(),
        "{out:?}"
    );
    // Off for the stream only.
    let (_, out) = reload(&mut r, &text(true, false));
    assert_eq!(recorded(&out), vec![("a".into(), false)]);
    assert!(
        unmounted(&out).is_empty() && started(&out).is_empty(),
        "{out:?}"
    );
    // record and something else: a restart, which carries the new record.
    let (_, out) = reload(
        &mut r,
        &text(true, true).replace("source = \"tone\"", "source = \"tone\"\ntone_hz = 880.0"),
    );
    assert_eq!(unmounted(&out), vec!["a".to_string()]);
    assert!(recorded(&out).is_empty(), "{out:?}");
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Mount(s) if s.name == "a" && s.record)),
        "{out:?}"
    );
}

#[test]
fn reload_applies_each_kind_of_change_or_names_it() {
    let tone = |name: &str, hz: u32| {
        format!("\n[[stream]]\nname = \"{name}\"\nsource = \"tone\"\ntone_hz = {hz}.0\n")
    };
    let first = format!("{BASE}{}{}", tone("a", 440), tone("b", 440));
    let mut r = Rig::new(&first);
    r.plug(mic(1, "1-1.4", None), Ok(()));

    // A stream added, one changed, one untouched; nothing else disturbed.
    let (rep, out) = reload(
        &mut r,
        &format!("{BASE}{}{}{}", tone("a", 440), tone("b", 880), tone("c", 1)),
    );
    assert_eq!(
        (rep.added, rep.changed, rep.removed),
        (vec!["c".into()], vec!["b".into()], vec![])
    );
    assert_eq!(unmounted(&out), vec!["b".to_string()]);
    assert_eq!(started(&out), vec![("b".into(), 1), ("c".into(), 1)]);
    assert!(rep.needs_restart.is_empty() && rep.refused.is_none());

    // A rule renames the device and changes its encoding: restarted as such.
    let rule = "\n[[device]]\nname = \"porch\"\nvendor_product = \"0d8c:0014\"\ncodec = \"l16\"\n";
    let (rep, out) = reload(
        &mut r,
        &format!("{BASE}{}{}{rule}", tone("a", 440), tone("b", 880)),
    );
    assert_eq!(rep.removed, vec!["c".to_string()]);
    assert!(
        rep.changed.contains(&"usb-audio-device".to_string()),
        "{rep:?}"
    );
    assert!(unmounted(&out).contains(&"usb-audio-device".to_string()));
    assert!(started(&out).contains(&("porch".into(), 1)));
    assert_eq!(r.device(1).name.as_deref(), Some("porch"));

    // The defaults change: the device's settings follow (no restart needed).
    let (rep, out) = reload(
        &mut r,
        &format!(
            "{BASE}\n[defaults]\nbitrate = 96000\n{}{}",
            tone("a", 440),
            tone("b", 880)
        ),
    );
    assert!(
        rep.changed.contains(&"porch".to_string())
            || rep.changed.contains(&"usb-audio-device".to_string()),
        "{rep:?}"
    );
    assert!(!started(&out).is_empty());

    // Keys that need a restart are named, kept in the snapshot, and the rest applies.
    let text = format!(
        "[rtsp]\nport = 9554\n\n[health]\nlevel_interval_ms = 500\nstall_timeout_ms = 4000\n\n[devices]\nstate_dir = \"/nonexistent\"\nalsa_device = \"hw:CARD={{card_id}},DEV={{pcm}}\"\n{}\n[[alert]]\nurl = \"http://127.0.0.1:9/\"\n",
        tone("a", 440)
    );
    let (rep, _) = reload(&mut r, &text);
    assert_eq!(
        rep.needs_restart,
        vec![
            "rtsp.port".to_string(),
            "health.level_interval_ms".into(),
            "alert[alert-1]".into()
        ]
    );
    assert_eq!(rep.removed, vec!["b".to_string()]);
    let snap = r.m.snapshot();
    assert!(
        snap.status_line()
            .contains("restart to apply rtsp.port, health.level_interval_ms, alert[alert-1]"),
        "{}",
        snap.status_line()
    );

    // A stall timeout the running level interval cannot serve is refused whole.
    let text = format!(
        "{BASE}\n[health]\nlevel_interval_ms = 100\nstall_timeout_ms = 300\n{}",
        tone("z", 440)
    );
    let (rep, out) = reload(&mut r, &text);
    assert!(
        rep.refused
            .as_deref()
            .unwrap()
            .contains("twice the running level interval"),
        "{rep:?}"
    );
    assert!(out.is_empty());
    assert!(!r.names().contains(&"z".to_string()));

    // An invalid file is refused and nothing changes.
    let out =
        r.m.handle(Input::Reload(Err("hark.toml:1:1: bad".into())), r.now);
    assert!(out.effects.is_empty());
    assert!(
        matches!(out.answer, Answer::Reload(ref rep) if rep.refused.as_deref().unwrap().contains("bad"))
    );
}

#[test]
fn a_configured_stream_takes_its_name_back_from_a_device() {
    let mut r = Rig::new(BASE);
    r.plug(mic(1, "1-1.4", None), Ok(()));
    let text = format!("{BASE}\n[[stream]]\nname = \"usb-audio-device\"\nsource = \"tone\"\n");
    let (rep, out) = reload(&mut r, &text);
    assert!(rep.refused.is_none());
    let names = r.names();
    assert_eq!(names.len(), 2, "{names:?} {out:?}");
    assert!(names.contains(&"usb-audio-device".to_string()));
    assert_ne!(r.device(1).name.as_deref(), Some("usb-audio-device"));
    assert_eq!(r.device(1).status, DeviceState::Streaming);
}

#[test]
fn restart_answers_whether_the_stream_exists() {
    let text = "[rtsp]\nport = 8554\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\n";
    let mut r = Rig::new(text);
    let out = r.m.handle(
        Input::Restart {
            name: "tone".into(),
        },
        r.now,
    );
    assert_eq!(out.answer, Answer::Restart(true));
    assert_eq!(started(&out.effects), vec![("tone".into(), 2)]);
    let out = r.m.handle(
        Input::Restart {
            name: "nope".into(),
        },
        r.now,
    );
    assert_eq!(out.answer, Answer::Restart(false));
}
