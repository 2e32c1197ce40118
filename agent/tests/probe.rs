//! `harkd probe` against a fixture /sys + /proc tree with the device kinds users
//! plug in: a USB mic with a serial, two identical serial-less mics on different
//! ports, a CM108-style adapter, an 8-input interface, a 384 kHz bat-detector mic,
//! a speaker (no capture) and onboard audio. The stream files follow the layout
//! the kernel prints (sound/usb/proc.c); the values are typical of those device
//! classes, written for these tests, not captured from a particular unit (trees
//! captured from the real kernel come from the QEMU hardware tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::fixture::{self, UsbCard};

fn stream(title: &str, alts: &[(&str, u32, &str)]) -> String {
    let mut s = format!(
        "{title} at usb-0000:00:14.0-1, full speed : USB Audio\n\nCapture:\n  Status: Stop\n"
    );
    for (i, (format, channels, rates)) in alts.iter().enumerate() {
        s.push_str(&format!(
            "  Interface 1\n    Altset {}\n    Format: {format}\n    Channels: {channels}\n    Endpoint: 0x82 (2 IN) (ASYNC)\n    Rates: {rates}\n    Bits: 16\n",
            i + 1
        ));
    }
    s
}

#[test]
fn probe_reports_every_kind_of_device() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture::pci_card(root, 0, "PCH");
    let mic = stream(
        "Acme StudioMic",
        &[("S16_LE S24_3LE", 1, "44100, 48000, 96000")],
    );
    let twin = stream("GeneralPlus USB Audio Device", &[("S16_LE", 1, "48000")]);
    let cm108 = stream(
        "C-Media Electronics Inc. USB PnP Sound Device",
        &[("S16_LE", 1, "48000, 44100")],
    );
    let eight = stream(
        "Acme 8i8",
        &[("S32_LE", 8, "44100, 48000, 88200, 96000, 176400, 192000")],
    );
    let bat = stream("Acme UltraMic", &[("S16_LE", 1, "384000")]);
    #[allow(clippy::too_many_arguments)]
    fn card<'a>(
        index: u32,
        card_id: &'a str,
        port: &'a str,
        vendor: &'a str,
        product_id: &'a str,
        serial: Option<&'a [u8]>,
        product: Option<&'a [u8]>,
        stream0: Option<&'a str>,
        capture: bool,
    ) -> UsbCard<'a> {
        UsbCard {
            index,
            card_id,
            port,
            vendor,
            product_id,
            serial,
            manufacturer: None,
            product,
            stream0,
            capture,
        }
    }
    let cards = [
        card(
            1,
            "StudioMic",
            "1-1.1",
            "1234",
            "0001",
            Some(&b"SN 12/34 \"x\""[..]),
            Some(&b"StudioMic"[..]),
            Some(mic.as_str()),
            true,
        ),
        card(
            2,
            "Device",
            "1-1.3",
            "1b3f",
            "2008",
            None,
            Some(&b"USB Audio Device"[..]),
            Some(twin.as_str()),
            true,
        ),
        card(
            3,
            "Device_1",
            "1-1.2",
            "1b3f",
            "2008",
            None,
            Some(&b"USB Audio Device"[..]),
            Some(twin.as_str()),
            true,
        ),
        card(
            4,
            "Device_2",
            "1-2",
            "0d8c",
            "013c",
            Some(&b"000000"[..]),
            Some(&b"USB PnP Sound Device"[..]),
            Some(cm108.as_str()),
            true,
        ),
        card(
            5,
            "i8",
            "2-1",
            "1235",
            "8016",
            Some(&b"Y8ABCD"[..]),
            Some(&b"8i8"[..]),
            Some(eight.as_str()),
            true,
        ),
        card(
            6,
            "UltraMic",
            "2-2",
            "0869",
            "0389",
            None,
            Some(&b"UltraMic 384K"[..]),
            Some(bat.as_str()),
            true,
        ),
        card(
            7,
            "Speaker",
            "2-3",
            "4321",
            "0001",
            None,
            Some(&b"Speaker"[..]),
            None,
            false,
        ),
    ];
    for c in &cards {
        fixture::usb_card(root, c);
    }
    let out = Command::new(common::HARKD)
        .arg("probe")
        .arg("--sysfs-root")
        .arg(root.join("sys"))
        .arg("--procfs-root")
        .arg(root.join("proc"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let block = |card: u32| -> String {
        let start = text
            .find(&format!("card {card} ["))
            .unwrap_or_else(|| panic!("card {card} missing:\n{text}"));
        let rest = &text[start..];
        let end = rest[1..].find("\ncard ").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let expect = |card: u32, lines: &[&str]| {
        let b = block(card);
        for l in lines {
            assert!(b.contains(l), "card {card}: missing {l:?} in\n{b}");
        }
    };
    expect(0, &["ignored: not a USB device"]);
    expect(
        1,
        &[
            "(1234:0001, serial \"SN 12/34 \\\"x\\\"\", port 1-1.1)",
            "capture: S16_LE S24_3LE 1 ch 44100, 48000, 96000 Hz",
            "name: studiomic (New)",
            "plan: capture S16_LE 48000 Hz 1 ch -> opus 48000 Hz 1 ch\n",
            "alsa device: hw:1,0",
            "url: rtsp://<host>:8554/studiomic",
        ],
    );
    // Twins: named in port order, whatever their card numbers.
    expect(3, &["port 1-1.2)", "name: usb-audio-device (New)"]);
    expect(2, &["port 1-1.3)", "name: usb-audio-device-2 (New)"]);
    // An all-zero serial is no serial.
    expect(
        4,
        &[
            "serial none",
            "name: usb-pnp-sound-device (New)",
            "capture S16_LE 48000 Hz 1 ch",
        ],
    );
    expect(
        5,
        &[
            "capture: S32_LE 8 ch",
            "plan: capture S32_LE 48000 Hz 8 ch -> opus 48000 Hz 2 ch",
        ],
    );
    expect(
        6,
        &[
            "plan: capture S16_LE 384000 Hz 1 ch -> opus 48000 Hz 1 ch (resampled)",
            "name: ultramic-384k",
        ],
    );
    expect(7, &["ignored: no capture PCM"]);
}

#[test]
fn probe_of_an_empty_or_missing_tree() {
    let out = Command::new(common::HARKD)
        .args([
            "probe",
            "--sysfs-root",
            "/nonexistent/sys",
            "--procfs-root",
            "/nonexistent/proc",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no sound cards"));
}

/// `harkd probe` on trees captured from a real kernel: Debian's 6.1 kernel in
/// the QEMU hardware tests, its snd-usb-audio enumerating emulated USB mics
/// (hardware-tests/hil.py, scenario real-trees, which also checks in CI that the
/// kernel still prints exactly these trees).
#[test]
fn probe_on_trees_captured_from_the_real_kernel() {
    let probe = |tree: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(tree);
        let out = Command::new(common::HARKD)
            .arg("probe")
            .arg("--sysfs-root")
            .arg(dir.join("sys"))
            .arg("--procfs-root")
            .arg(dir.join("proc"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let out = probe("qemu-usb-mics");
    for want in [
        // The kernel called it "Mic"; the serial and three rates are read.
        "card 0 [Mic]: hark Field Mic (1209:4d10, serial \"HIL-A1B2\", port 1-1)",
        "capture: S16_LE 1 ch 44100, 48000, 96000 Hz (interface 1 altset 1)",
        "name: field-mic (New)",
        "plan: capture S16_LE 48000 Hz 1 ch -> opus 48000 Hz 1 ch",
        // Identical twins without serials: told apart by port, in port order.
        "card 1 [Device]: hark USB Audio Device (1209:7777, serial none, port 1-2)",
        "name: usb-audio-device (New)",
        "card 2 [Device_1]: hark USB Audio Device (1209:7777, serial none, port 1-3)",
        "name: usb-audio-device-2 (New)",
        // Eight inputs, captured natively, down-mixed for Opus.
        "capture: S16_LE 8 ch 48000 Hz (interface 1 altset 1)",
        "plan: capture S16_LE 48000 Hz 8 ch -> opus 48000 Hz 2 ch",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let out = probe("qemu-cm108");
    for want in [
        "card 0 [Device]: C-Media Electronics Inc. USB PnP Sound Device (0d8c:0014, serial none, port 1-1)",
        "capture: S16_LE 1 ch 48000, 44100 Hz (interface 1 altset 1)",
        "name: usb-pnp-sound-device (New)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let out = probe("qemu-onboard");
    assert!(
        out.contains("card 0 [I82801AAICH]: not a USB device")
            && out.contains("ignored: not a USB device (set devices.allow_non_usb to stream it)"),
        "{out}"
    );
    let out = probe("qemu-bat-mic");
    for want in [
        "capture: S16_LE 1 ch 384000 Hz (interface 1 altset 1)",
        "plan: capture S16_LE 384000 Hz 1 ch -> opus 48000 Hz 1 ch (resampled)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
