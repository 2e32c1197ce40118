//! The identity of a USB audio device: what tells one microphone from another.
//!
//! Built from the udev properties of the sound card's USB parent (the same keys
//! udev's `60-persistent-*` rules and `usb_id` builtin produce) and from the
//! device path. Device strings are hostile input: serials and product names may
//! contain spaces, slashes, quotes, control characters, invalid UTF-8, or be 300
//! characters long; everything here is cleaned, bounded and never trusted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest serial or product string kept (USB string descriptors hold at most
/// 126 UTF-16 units).
const MAX_STRING: usize = 126;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub vendor_id: u16,
    pub product_id: u16,
    /// The serial number, when present and believable (see [`clean_serial`]).
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// The physical port, as the kernel names the USB device: "1-1.4" is port 4
    /// of the hub on port 1 of bus 1. Stable for a given socket.
    pub port_path: String,
    /// The udev `ID_PATH` ("platform-xhci-hcd.0-usb-0:1.4:1.0"), when known.
    pub id_path: Option<String>,
}

impl Identity {
    /// "0d8c:0014"
    pub fn vendor_product(&self) -> String {
        format!("{:04x}:{:04x}", self.vendor_id, self.product_id)
    }
}

/// Decodes udev's `\xNN` escapes (as in `ID_MODEL_ENC`) to text; invalid UTF-8
/// becomes U+FFFD.
pub fn decode_udev_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(h) = b.get(i + 2..i + 4)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Trims, drops control characters, bounds the length; `None` when nothing is left.
pub fn clean_text(s: &str) -> Option<String> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_STRING)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A serial number worth trusting: not empty, not all zeros (or all one repeated
/// character), not a placeholder some vendors ship in every unit.
pub fn clean_serial(s: &str) -> Option<String> {
    let s = clean_text(s)?;
    let first = s.chars().next()?;
    if s.chars().all(|c| c == first) && (first == '0' || s.len() > 3) {
        return None;
    }
    const BOGUS: &[&str] = &[
        "0123456789",
        "0123456789abcdef",
        "123456789",
        "serial",
        "serialnumber",
        "none",
        "n/a",
        "default",
        "00000000-0000-0000-0000-000000000000",
    ];
    if BOGUS.contains(&s.to_ascii_lowercase().as_str()) {
        return None;
    }
    Some(s)
}

/// The USB device's port path from a sysfs device path: the last component
/// shaped like "B-P[.P...]" ("/devices/.../usb1/1-1/1-1.4/1-1.4:1.0/sound/card1"
/// gives "1-1.4").
pub fn port_from_devpath(devpath: &str) -> Option<String> {
    devpath
        .split('/')
        .rfind(|c| {
            let Some((bus, ports)) = c.split_once('-') else {
                return false;
            };
            !bus.is_empty()
                && bus.chars().all(|ch| ch.is_ascii_digit())
                && !ports.is_empty()
                && ports.chars().all(|ch| ch.is_ascii_digit() || ch == '.')
        })
        .map(str::to_string)
}

/// An identity from udev properties of the card (which carry its USB parent's
/// `ID_*` keys). `None` when the card is not a USB device.
pub fn from_properties(props: &BTreeMap<String, String>) -> Option<Identity> {
    let get = |k: &str| props.get(k).map(String::as_str);
    if get("ID_BUS") != Some("usb") {
        return None;
    }
    let hex = |k: &str| get(k).and_then(|v| u16::from_str_radix(v.trim(), 16).ok());
    let vendor_id = hex("ID_VENDOR_ID")?;
    let product_id = hex("ID_MODEL_ID")?;
    let text = |enc: &str, plain: &str| {
        get(enc)
            .map(decode_udev_escapes)
            .or_else(|| get(plain).map(|s| s.replace('_', " ")))
            .and_then(|s| clean_text(&s))
    };
    let port_path = get("DEVPATH").and_then(port_from_devpath)?;
    Some(Identity {
        vendor_id,
        product_id,
        serial: get("ID_SERIAL_SHORT").and_then(clean_serial),
        manufacturer: text("ID_VENDOR_ENC", "ID_VENDOR"),
        product: text("ID_MODEL_ENC", "ID_MODEL"),
        port_path,
        id_path: get("ID_PATH").and_then(clean_text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn serials() {
        let cases: &[(&str, Option<&str>)] = &[
            ("A1B2C3", Some("A1B2C3")),
            ("  A1B2C3 \n", Some("A1B2C3")),
            ("", None),
            ("   ", None),
            ("0", None),
            ("000000000000", None),
            ("FFFFFFFF", None),
            ("0123456789ABCDEF", None),
            ("Serial", None),
            ("has space/and slash", Some("has space/and slash")),
            ("bell\u{7}", Some("bell")),
            ("ünï", Some("ünï")),
            ("111", Some("111")),
        ];
        for (raw, want) in cases {
            assert_eq!(clean_serial(raw).as_deref(), *want, "{raw:?}");
        }
        assert_eq!(clean_serial(&"x".repeat(300)), None);
        assert_eq!(
            clean_serial(&"ab".repeat(150)).map(|s| s.len()),
            Some(MAX_STRING)
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            decode_udev_escapes("USB\\x20PnP\\x20Sound"),
            "USB PnP Sound"
        );
        assert_eq!(decode_udev_escapes("a\\x2fb"), "a/b");
        assert_eq!(decode_udev_escapes("bad\\xff"), "bad\u{fffd}");
        assert_eq!(decode_udev_escapes("trailing\\x2"), "trailing\\x2");
    }

    #[test]
    fn ports() {
        let p = "/devices/platform/soc/3f980000.usb/usb1/1-1/1-1.4/1-1.4:1.0/sound/card1";
        assert_eq!(port_from_devpath(p).as_deref(), Some("1-1.4"));
        let v = "/devices/platform/vhci_hcd.0/usb3/3-1/3-1:1.0/sound/card0";
        assert_eq!(port_from_devpath(v).as_deref(), Some("3-1"));
        assert_eq!(
            port_from_devpath("/devices/pci0000:00/0000:00:1f.3/sound/card0"),
            None
        );
    }

    #[test]
    fn from_udev_properties() {
        let p = props(&[
            ("ID_BUS", "usb"),
            ("ID_VENDOR_ID", "0d8c"),
            ("ID_MODEL_ID", "0014"),
            ("ID_SERIAL_SHORT", "000000000000"),
            ("ID_VENDOR_ENC", "C-Media\\x20Electronics\\x20Inc."),
            ("ID_MODEL_ENC", "USB\\x20Audio\\x20Device\\x20\\x20\\x20"),
            (
                "DEVPATH",
                "/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/sound/card2",
            ),
            ("ID_PATH", "pci-0000:00:14.0-usb-0:2:1.0"),
        ]);
        let id = from_properties(&p).unwrap();
        assert_eq!(id.vendor_product(), "0d8c:0014");
        assert_eq!(id.serial, None);
        assert_eq!(id.manufacturer.as_deref(), Some("C-Media Electronics Inc."));
        assert_eq!(id.product.as_deref(), Some("USB Audio Device"));
        assert_eq!(id.port_path, "1-2");
        let onboard = props(&[
            ("ID_BUS", "pci"),
            ("DEVPATH", "/devices/pci0000:00/sound/card0"),
        ]);
        assert_eq!(from_properties(&onboard), None);
    }
}
