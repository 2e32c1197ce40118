//! One entry point per parser of outside input, each checking the invariants
//! that must hold for any input: the fuzz targets (`fuzz/`, run by
//! `scripts/fuzz.sh` with cargo-fuzz) call these, and `agent/tests/fuzz_corpus.rs`
//! replays the committed corpora through them on stable in `make test`.
//!
//! Each function panics when an invariant breaks (a panic is what a fuzzer
//! reports); an input that is merely invalid is not a failure, as long as it is
//! refused the way the agent refuses it (a clear error, nothing lost).

// Panicking on a broken invariant is what these functions are for.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{Config, validate_stream_name};
use crate::deadman::ledger::{Decision, Ledger as RebootLedger, Now, Policy};
use crate::devices::asound::{Rates, parse_stream, parse_usbid};
use crate::devices::identity::{Identity, UsbAttrs, from_usb_attrs};
use crate::devices::naming::{self, Ledger as NameLedger};
use crate::devices::plan::{Wish, fit};
use crate::persist::{Loaded, Store};

/// A fuzz target: panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("asound", asound),
    ("naming", naming),
    ("names_ledger", names_ledger),
    ("reboot_ledger", reboot_ledger),
    ("http", http),
    ("rtsp_url", rtsp_url),
];

/// `hark.toml` to a validated config. Accepted: every stream and device rule
/// name is valid and unique, and the config has no changes against itself.
/// Refused: the error names the file, a line and column inside it (or 0:0 for
/// the file as a whole), a key and a reason.
pub fn config(data: &[u8]) {
    let path = Path::new("fuzz.toml");
    match Config::parse_bytes(path, data) {
        Ok(cfg) => {
            let mut seen = BTreeSet::new();
            for s in &cfg.streams {
                assert!(validate_stream_name(&s.name).is_ok(), "stream {:?}", s.name);
                assert!(seen.insert(s.name.clone()), "stream {:?} twice", s.name);
            }
            for r in &cfg.devices.rules {
                assert!(validate_stream_name(&r.name).is_ok(), "rule {:?}", r.name);
            }
            assert!(cfg.changed_keys(&cfg).is_empty());
        }
        Err(e) => {
            assert_eq!(e.path, path);
            let lines = data.split(|b| *b == b'\n').count();
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            assert!(!e.key.is_empty() && !e.message.is_empty(), "{e}");
        }
    }
}

/// A `/proc/asound/cardN/stream*` file (and `usbid`): what is parsed is
/// consistent, and every plan fitted to it is one the device can do.
pub fn asound(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_usbid(&text);
    let parsed = parse_stream(&text);
    for alt in parsed.capture.iter().chain(&parsed.playback) {
        assert!(alt.channels > 0 && !alt.formats.is_empty());
        match &alt.rates {
            Rates::List(l) => assert!(!l.is_empty() && l.iter().all(|r| *r > 0)),
            Rates::Range { min, max } => assert!(*min > 0 && min <= max),
        }
    }
    let wishes = [
        (48_000, None, 2),
        (16_000, Some(1), 2),
        (96_000, Some(8), 8),
    ];
    for (sample_rate, channels, max_channels) in wishes {
        let wish = Wish {
            sample_rate,
            channels,
            max_channels,
        };
        let Ok(plan) = fit(&parsed.capture, wish) else {
            continue;
        };
        // One of the device's settings, as it offers it (a file may list one
        // interface and altset twice, with other channels: found by fuzzing).
        let offered = parsed.capture.iter().any(|a| {
            (a.interface, a.altset) == (plan.interface, plan.altset)
                && a.rates.contains(plan.capture_rate)
                && a.formats.contains(&plan.format)
                && a.channels == plan.capture_channels
        });
        assert!(offered, "{plan:?} is not one of {:?}", parsed.capture);
        assert!(plan.stream_channels >= 1 && plan.stream_channels <= max_channels);
        assert_eq!(plan.stream_rate, sample_rate);
    }
}

/// Devices from hostile descriptor strings: one per line, fields separated by
/// `|`: vendor id, product id, serial, manufacturer, product, port path.
fn devices_of(data: &[u8]) -> Vec<Identity> {
    let mut by_port = BTreeMap::new();
    for line in data.split(|b| *b == b'\n').take(8) {
        let f: Vec<&[u8]> = line.split(|b| *b == b'|').collect();
        let field = |i: usize| f.get(i).map(|b| b.to_vec());
        let attrs = UsbAttrs {
            id_vendor: field(0).unwrap_or_default(),
            id_product: field(1).unwrap_or_default(),
            serial: field(2),
            manufacturer: field(3),
            product: field(4),
        };
        let port = String::from_utf8_lossy(f.get(5).copied().unwrap_or(b"1-1"));
        // Two devices are never on one port.
        if let Some(id) = from_usb_attrs(&attrs, &port, None) {
            by_port.entry(id.port_path.clone()).or_insert(id);
        }
    }
    by_port.into_values().collect()
}

/// Identity and names: devices from hostile strings are named at coldplug
/// (valid names, never two alike, never a configured stream's); after that,
/// plugging them one at a time in other orders gives each the same name.
pub fn naming(data: &[u8]) {
    let devices = devices_of(data);
    let reserved: BTreeSet<String> = ["test-tone".to_string()].into();
    let mut ledger = NameLedger::default();
    let first: Vec<String> = naming::assign_all(&devices, &[], &reserved, &[], &mut ledger, 1)
        .into_iter()
        .map(|a| a.expect("no rules, so no conflicts").name)
        .collect();
    let mut given = BTreeSet::new();
    for name in &first {
        assert!(validate_stream_name(name).is_ok(), "{name:?}");
        assert!(
            !reserved.contains(name),
            "{name:?} is a configured stream's"
        );
        assert!(
            given.insert(name.clone()),
            "{name:?} given twice: {first:?}"
        );
    }
    let n = devices.len();
    let orders: Vec<Vec<usize>> = vec![
        (0..n).rev().collect(),
        (0..n).map(|i| (i + 1) % n.max(1)).collect(),
    ];
    for order in orders {
        let mut l = ledger.clone();
        let mut named: Vec<(Identity, String)> = vec![];
        for i in order {
            let got = naming::assign_all(
                std::slice::from_ref(&devices[i]),
                &named,
                &reserved,
                &[],
                &mut l,
                2,
            );
            let name = got[0].clone().expect("no rules, so no conflicts").name;
            assert_eq!(
                name, first[i],
                "device {i} of {devices:?} named {name:?} when plugged after {named:?}"
            );
            named.push((devices[i].clone(), name));
        }
    }
}

/// `names.json`: a file that loads is one harkd could have written (valid
/// names, see `Ledger::check`) and is written back as it was read.
pub fn names_ledger(data: &[u8]) {
    if let Loaded::Ok(ledger) = Store::<NameLedger>::decode(data) {
        for e in &ledger.entries {
            assert!(validate_stream_name(&e.name).is_ok(), "{:?}", e.name);
        }
        let bytes = Store::<NameLedger>::render(&ledger).expect("renders");
        match Store::<NameLedger>::decode(&bytes) {
            Loaded::Ok(again) => assert_eq!(again, ledger),
            other => panic!("written back unreadable: {:?}", other.problem()),
        }
    }
}

/// `reboots.json`: a file that loads round-trips, and the deadman's decision on
/// it, at any uptime in this boot or a new one, never allows more reboots than
/// the cap nor two closer than the spacing.
pub fn reboot_ledger(data: &[u8]) {
    let Loaded::Ok(ledger) = Store::<RebootLedger>::decode(data) else {
        return;
    };
    let bytes = Store::<RebootLedger>::render(&ledger).expect("renders");
    match Store::<RebootLedger>::decode(&bytes) {
        Loaded::Ok(again) => assert_eq!(again, ledger),
        other => panic!("written back unreadable: {:?}", other.problem()),
    }
    let policy = Policy {
        max_reboots: 3,
        window_s: 24 * 3600,
        min_spacing_s: 600,
    };
    let seen = ledger.current.as_ref().map(|c| c.boot_id.clone());
    let boots = [seen.unwrap_or_default(), "a-new-boot".to_string()];
    for boot_id in boots {
        for uptime_s in [0, 599, 601, 86_401, u64::MAX] {
            let mut l = ledger.clone();
            let now = Now {
                boot_id: boot_id.clone(),
                uptime_s,
                wall_unix: u64::MAX,
            };
            l.observe(&now, &policy);
            if l.decide(&policy) == Decision::Allow {
                assert!(l.locked.is_none());
                assert!(l.in_window(&policy) < policy.max_reboots, "{l:?}");
                assert!(l.reboots.iter().all(|r| l.since(r) >= policy.min_spacing_s));
                // Recorded, the same moment allows no second one.
                l.record_reboot(&now, "fuzz");
                l.observe(&now, &policy);
                assert_ne!(l.decide(&policy), Decision::Allow, "{l:?}");
            }
        }
    }
}

/// The HTTP endpoint, fed raw bytes as a client's connection: it answers with
/// HTTP/1.x status lines (never a server error) or closes, within a bound.
pub fn http(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    // No sender: an event stream (`/api/v1/events`) sends its first event and
    // ends, as it does when the agent stops, instead of waiting for changes.
    let (tx, snapshot) = tokio::sync::watch::channel(crate::state::Snapshot::default());
    drop(tx);
    let ctx = Arc::new(crate::http::Context::new(snapshot, 8554));
    let out = rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let served = tokio::spawn(crate::http::serve_connection(server, ctx));
        client.write_all(data).await.expect("the pipe holds it");
        client.shutdown().await.expect("shutdown");
        let mut out = vec![];
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
            .await
            .expect("the endpoint answered or closed within 10 s")
            .expect("read");
        served.await.expect("the connection's task did not panic");
        out
    });
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .collect();
    assert!(out.is_empty() || text.starts_with("HTTP/1."), "{text:?}");
    for s in statuses {
        assert!(!s.starts_with('5') || s == "503", "status {s}: {text:?}");
    }
}

/// A request URL, as the RTSP server's DESCRIBE hook reads it: parsed by
/// gst-rtsp, its path taken as bytes (a non-UTF-8 path crashed the agent once).
pub fn rtsp_url(data: &[u8]) {
    if let Some(path) = crate::media::path_of_request_url(data) {
        assert!(!path.ends_with('/'), "{path:?}");
    }
}
