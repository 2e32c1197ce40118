//! What to do with a card that appeared: ignore it (and say why), or name it, fit
//! a plan, and describe the stream to start. Pure: the card has been read, the
//! ledger is in memory; nothing here touches the disk or the device.

use std::collections::BTreeSet;

use super::asound;
use super::identity::{self, Identity, UsbAttrs};
use super::naming::{self, Assignment, Ledger, NameRule};
use super::plan::{self, Plan, Wish};
use super::scan::Card;
use crate::config::{DeviceSettings, DevicesConfig, Source, StreamSpec};

/// The outcome for one card.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not for us (not USB, playback only, ...): the reason is for the operator.
    Ignore { reason: String },
    /// Named, but its capabilities cannot meet the wish: no stream, a reason.
    Unplayable {
        assignment: Assignment,
        identity: Identity,
        reason: String,
    },
    /// A `[[device]]` rule gives it a name another device present holds.
    Conflict { identity: Identity, reason: String },
    /// Named and planned: start this stream.
    Stream {
        assignment: Assignment,
        identity: Identity,
        plan: Option<Plan>,
        spec: StreamSpec,
    },
}

/// A card's id as ALSA accepts it: at most 15 characters of `[A-Za-z0-9_]`,
/// starting with a letter (the kernel's own ids look like that too).
pub fn alsa_card_id(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(15)
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        id = format!("H{}", &id[..id.len().min(14)]);
    }
    id
}

/// Fills the ALSA device template.
pub fn alsa_device(template: &str, card_id: &str, index: u32, pcm: u32) -> String {
    template
        .replace("{card_id}", card_id)
        .replace("{card}", &index.to_string())
        .replace("{pcm}", &pcm.to_string())
}

fn name_rules(cfg: &DevicesConfig) -> Vec<NameRule> {
    cfg.rules
        .iter()
        .map(|r| NameRule {
            name: r.name.clone(),
            serial: r.serial.clone(),
            vendor_product: r.vendor_product,
            port_path: r.port.clone(),
        })
        .collect()
}

/// The identity of a card that is not USB (when such cards are allowed): the
/// card id stands in for the port, so it is as stable as the driver makes it.
fn non_usb_identity(card: &Card) -> Identity {
    Identity {
        vendor_id: 0,
        product_id: 0,
        serial: None,
        manufacturer: None,
        product: Some(card.card_id.clone()),
        port_path: format!("card:{}", card.card_id),
        id_path: None,
    }
}

/// The identity and capture PCM of a card hark could stream, or why not.
fn streamable(card: &Card, cfg: &DevicesConfig) -> Result<(Identity, u32), String> {
    let identity = match (&card.identity, cfg.allow_non_usb) {
        (Some(id), _) => id.clone(),
        (None, true) => non_usb_identity(card),
        (None, false) => {
            return Err("not a USB device (set devices.allow_non_usb to stream it)".into());
        }
    };
    let Some(pcm) = card.capture_pcms.first().copied() else {
        return Err("no capture PCM: the device plays audio but does not record".into());
    };
    Ok((identity, pcm))
}

/// Decides for `cards` appearing together (every card at coldplug, one at
/// hotplug), beside the devices already named (`named`) and the configured
/// streams' names (`reserved`): the one naming path (see
/// [`naming::assign_all`]). Names given are recorded in `ledger`. The result is
/// in the order of `cards`.
pub fn decide_set(
    cards: &[Card],
    named: &[(Identity, String)],
    reserved: &BTreeSet<String>,
    cfg: &DevicesConfig,
    ledger: &mut Ledger,
    now: u64,
) -> Vec<Decision> {
    let checked: Vec<Result<(Identity, u32), String>> =
        cards.iter().map(|c| streamable(c, cfg)).collect();
    let ids: Vec<Identity> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|(id, _)| id.clone()))
        .collect();
    let mut names =
        naming::assign_all(&ids, named, reserved, &name_rules(cfg), ledger, now).into_iter();
    cards
        .iter()
        .zip(checked)
        .map(|(card, c)| match c {
            Err(reason) => Decision::Ignore { reason },
            Ok((identity, pcm)) => match names.next() {
                Some(Ok(assignment)) => plan_stream(card, cfg, identity, assignment, pcm),
                Some(Err(conflict)) => Decision::Conflict {
                    identity,
                    reason: conflict.to_string(),
                },
                None => unreachable!("one name per streamable card"),
            },
        })
        .collect()
}

/// The stream a named card gets under `cfg` (or why it cannot be streamed).
/// Also used on reload, to see whether a streaming device's settings changed.
pub fn plan_named(card: &Card, cfg: &DevicesConfig, assignment: Assignment) -> Decision {
    match streamable(card, cfg) {
        Err(reason) => Decision::Ignore { reason },
        Ok((identity, pcm)) => plan_stream(card, cfg, identity, assignment, pcm),
    }
}

fn plan_stream(
    card: &Card,
    cfg: &DevicesConfig,
    identity: Identity,
    assignment: Assignment,
    pcm: u32,
) -> Decision {
    let settings: &DeviceSettings = cfg
        .rules
        .iter()
        .find(|r| r.name == assignment.name)
        .map_or(&cfg.defaults, |r| &r.settings);
    let wish = Wish {
        sample_rate: settings.sample_rate,
        channels: settings.channels,
        max_channels: settings.max_channels(),
    };
    // USB cards say what they can do, other cards were asked through ALSA (when
    // free); with neither, GStreamer negotiates with the driver at start.
    let (plan, channels) = if card.identity.is_some() || !card.capture.is_empty() {
        match plan::fit(&card.capture, wish) {
            Ok(p) => {
                let ch = p.stream_channels;
                (Some(p), ch)
            }
            Err(e) => {
                return Decision::Unplayable {
                    assignment,
                    identity,
                    reason: e.to_string(),
                };
            }
        }
    } else {
        (None, settings.channels.unwrap_or(2).min(wish.max_channels))
    };
    let card_id = if cfg.pin_card_id {
        alsa_card_id(&assignment.name)
    } else {
        card.card_id.clone()
    };
    let spec = StreamSpec {
        name: assignment.name.clone(),
        source: Source::Alsa {
            device: alsa_device(&cfg.alsa_device, &card_id, card.index, pcm),
            buffer: cfg.alsa_buffer,
        },
        encoding: settings.encoding(channels),
        record: settings.record,
    };
    Decision::Stream {
        assignment,
        identity,
        plan,
        spec,
    }
}

/// The stream file of the mic [`rehearse`] makes up: mono and stereo capture at
/// 48 kHz, 16 bit, in the kernel's `proc.c` layout.
const REHEARSAL_STREAM: &str = "\
hark Rehearsal Mic at usb-0000:00:00.0-1, full speed : USB Audio

Capture:
  Status: Stop
  Interface 1
    Altset 1
    Format: S16_LE
    Channels: 1
    Endpoint: 0x81 (1 IN) (ASYNC)
    Rates: 48000
    Bits: 16
    Channel map: MONO
  Interface 1
    Altset 2
    Format: S16_LE
    Channels: 2
    Endpoint: 0x81 (1 IN) (ASYNC)
    Rates: 48000
    Bits: 16
    Channel map: FL FR
";

/// Runs the path a plugged-in mic takes through this module once, before
/// READY, on a mic that is not there: its stream file parsed, an identity made
/// from `usb` (a USB device's attributes and port, read at start-up; made up
/// when there is none), named against an empty ledger of its own, planned and
/// described under `cfg`. Nothing is kept or recorded: the point is that the
/// first mic plugged in after start runs code that has run (paged in from the
/// SD card, or translated by an emulator) instead of paying for that itself.
pub fn rehearse(cfg: &DevicesConfig, usb: Option<(String, UsbAttrs)>) -> Decision {
    let (port, attrs) = usb.unwrap_or_else(|| {
        (
            "1-1".to_string(),
            UsbAttrs {
                id_vendor: b"1d6b".to_vec(),
                id_product: b"0000".to_vec(),
                serial: Some(b"REHEARSAL".to_vec()),
                manufacturer: Some(b"hark".to_vec()),
                product: Some(b"Rehearsal Mic".to_vec()),
            },
        )
    });
    let parsed = asound::parse_stream(REHEARSAL_STREAM);
    let card = Card {
        index: u32::MAX,
        card_id: "Rehearsal".to_string(),
        identity: identity::from_usb_attrs(&attrs, &port, None),
        title: Some(parsed.title),
        capture: parsed.capture,
        capture_pcms: vec![0],
    };
    let mut ledger = Ledger::default();
    decide_set(&[card], &[], &BTreeSet::new(), cfg, &mut ledger, 0)
        .pop()
        .unwrap_or(Decision::Ignore {
            reason: "nothing decided".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Codec, DeviceRule};
    use crate::devices::asound::{AltSetting, Rates, SampleFormat};
    use std::path::PathBuf;
    use std::time::Duration;

    /// One card on its own, as at hotplug with nothing else attached.
    fn decide(
        card: &Card,
        cfg: &DevicesConfig,
        named: &[(Identity, String)],
        reserved: &BTreeSet<String>,
        ledger: &Ledger,
    ) -> Decision {
        let mut ledger = ledger.clone();
        decide_set(
            std::slice::from_ref(card),
            named,
            reserved,
            cfg,
            &mut ledger,
            0,
        )
        .remove(0)
    }

    fn settings() -> DeviceSettings {
        DeviceSettings {
            codec: Codec::Opus,
            bitrate: None,
            sample_rate: 48_000,
            channels: None,
            gain_db: 0.0,
            highpass_hz: 0.0,
            frame_ms: None,
            record: false,
        }
    }

    fn cfg() -> DevicesConfig {
        DevicesConfig {
            enabled: true,
            state_dir: PathBuf::from("/tmp"),
            alsa_device: "hw:CARD={card_id},DEV={pcm}".into(),
            pin_card_id: true,
            allow_non_usb: false,
            alsa_buffer: Duration::from_millis(500),
            defaults: settings(),
            rules: vec![],
        }
    }

    fn usb_card(index: u32, channels: u32, rates: &[u32], capture: bool) -> Card {
        Card {
            index,
            card_id: "Device".into(),
            identity: Some(Identity {
                vendor_id: 0x0d8c,
                product_id: 0x0014,
                serial: None,
                manufacturer: None,
                product: Some("USB Audio Device".into()),
                port_path: "1-1.4".into(),
                id_path: None,
            }),
            title: None,
            capture: vec![AltSetting {
                interface: 1,
                altset: 1,
                formats: vec![SampleFormat::S16Le],
                channels,
                rates: Rates::List(rates.to_vec()),
                bits: Some(16),
            }],
            capture_pcms: if capture { vec![0] } else { vec![] },
        }
    }

    #[test]
    fn card_ids() {
        let cases = [
            ("garden", "garden"),
            ("usb-audio-device-2", "usb_audio_devic"),
            ("2nd-mic", "H2nd_mic"),
            ("a", "a"),
        ];
        for (name, want) in cases {
            let id = alsa_card_id(name);
            assert_eq!(id, want);
            assert!(id.len() <= 15 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
    }

    #[test]
    fn a_usb_mic_becomes_a_stream() {
        let d = decide(
            &usb_card(2, 1, &[44100, 48000], true),
            &cfg(),
            &[],
            &BTreeSet::new(),
            &Ledger::default(),
        );
        let Decision::Stream {
            assignment,
            spec,
            plan,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(assignment.name, "usb-audio-device");
        assert_eq!(
            spec.source,
            Source::Alsa {
                device: "hw:CARD=usb_audio_devic,DEV=0".into(),
                buffer: Duration::from_millis(500)
            }
        );
        assert_eq!(
            (spec.encoding.sample_rate, spec.encoding.channels),
            (48_000, 1)
        );
        assert_eq!(spec.encoding.bitrate, 64_000);
        assert_eq!(plan.unwrap().capture_rate, 48_000);
    }

    #[test]
    fn ignored_and_unplayable_cards_say_why() {
        let mut onboard = usb_card(0, 2, &[48000], true);
        onboard.identity = None;
        let empty = BTreeSet::new();
        let l = Ledger::default();
        assert!(
            matches!(decide(&onboard, &cfg(), &[], &empty, &l), Decision::Ignore { reason } if reason.contains("not a USB device"))
        );
        let speaker = usb_card(1, 2, &[48000], false);
        assert!(
            matches!(decide(&speaker, &cfg(), &[], &empty, &l), Decision::Ignore { reason } if reason.contains("does not record"))
        );
        let mut dsd = usb_card(1, 2, &[48000], true);
        dsd.capture[0].formats = vec![SampleFormat::Other("DSD_U8".into())];
        assert!(
            matches!(decide(&dsd, &cfg(), &[], &empty, &l), Decision::Unplayable { reason, .. } if reason.contains("DSD_U8"))
        );
        // Allowed non-USB cards stream, named after their card id.
        let mut c = cfg();
        c.allow_non_usb = true;
        onboard.card_id = "Loopback".into();
        let Decision::Stream { assignment, .. } = decide(&onboard, &c, &[], &empty, &l) else {
            panic!()
        };
        assert_eq!(assignment.name, "loopback");
    }

    #[test]
    fn a_rule_names_the_device_and_sets_its_encoding() {
        let mut c = cfg();
        c.pin_card_id = false;
        c.rules.push(DeviceRule {
            name: "bats".into(),
            serial: None,
            vendor_product: Some((0x0d8c, 0x0014)),
            port: None,
            settings: DeviceSettings {
                codec: Codec::L16,
                sample_rate: 384_000,
                ..settings()
            },
        });
        let card = usb_card(3, 1, &[384_000], true);
        let Decision::Stream {
            assignment, spec, ..
        } = decide(&card, &c, &[], &BTreeSet::new(), &Ledger::default())
        else {
            panic!()
        };
        assert_eq!(assignment.name, "bats");
        assert_eq!(spec.encoding.codec, Codec::L16);
        assert_eq!(spec.encoding.sample_rate, 384_000);
        assert!(
            matches!(spec.source, Source::Alsa { ref device, .. } if device == "hw:CARD=Device,DEV=0")
        );
    }

    #[test]
    fn the_rehearsal_names_plans_and_describes_a_stream_and_keeps_nothing() {
        let cfg = cfg();
        let before = cfg.clone();
        match rehearse(&cfg, None) {
            Decision::Stream {
                assignment,
                identity,
                plan,
                spec,
            } => {
                assert_eq!(assignment.name, "rehearsal-mic");
                assert_eq!(identity.serial.as_deref(), Some("REHEARSAL"));
                let plan = plan.expect("a USB card is planned from its stream file");
                assert_eq!(plan.capture_rate, 48_000);
                assert_eq!(spec.name, "rehearsal-mic");
            }
            other => panic!("the rehearsal stopped short: {other:?}"),
        }
        // Run twice, it names the same way: it recorded nothing anywhere.
        assert!(
            matches!(rehearse(&cfg, None), Decision::Stream { assignment, .. } if assignment.name == "rehearsal-mic")
        );
        assert_eq!(cfg, before);
    }

    #[test]
    fn the_rehearsal_takes_the_usb_device_it_is_given() {
        let attrs = UsbAttrs {
            id_vendor: b"1d6b\n".to_vec(),
            id_product: b"0002\n".to_vec(),
            serial: Some(b"0000:00:04.0\n".to_vec()),
            manufacturer: Some(b"Linux 6.1.0 xhci-hcd\n".to_vec()),
            product: Some(b"xHCI Host Controller\n".to_vec()),
        };
        match rehearse(&cfg(), Some(("usb1".into(), attrs))) {
            Decision::Stream { identity, spec, .. } => {
                assert_eq!(identity.vendor_product(), "1d6b:0002");
                assert_eq!(identity.port_path, "usb1");
                assert_eq!(spec.name, "xhci-host-controller");
            }
            other => panic!("the rehearsal stopped short: {other:?}"),
        }
    }
}
