//! The identity of a USB audio device: what tells one microphone from another.
//!
//! Built from the sysfs attributes of the sound card's USB parent (the raw
//! strings the device reports; udev's `ID_SERIAL_SHORT` is the same serial with
//! whitespace replaced) and from its port path. Device strings are hostile input: serials and product names may
//! contain spaces, slashes, quotes, control characters, invalid UTF-8, or be 300
//! characters long; everything here is cleaned, bounded and never trusted.

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

/// The sysfs attributes of a USB device (`idVendor`, `idProduct`, `serial`,
/// `manufacturer`, `product`), raw: the strings come from the device itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsbAttrs {
    pub id_vendor: Vec<u8>,
    pub id_product: Vec<u8>,
    pub serial: Option<Vec<u8>>,
    pub manufacturer: Option<Vec<u8>>,
    pub product: Option<Vec<u8>>,
}

/// An identity from a USB device's attributes and its port path. `None` when
/// the vendor or product id is not a 4-digit hex number (not a USB device).
pub fn from_usb_attrs(a: &UsbAttrs, port_path: &str, id_path: Option<&str>) -> Option<Identity> {
    let hex = |b: &[u8]| {
        let s = std::str::from_utf8(b).ok()?.trim();
        (s.len() == 4)
            .then(|| u16::from_str_radix(s, 16).ok())
            .flatten()
    };
    let text = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .and_then(|b| clean_text(&String::from_utf8_lossy(b)))
    };
    Some(Identity {
        vendor_id: hex(&a.id_vendor)?,
        product_id: hex(&a.id_product)?,
        serial: a
            .serial
            .as_deref()
            .and_then(|b| clean_serial(&String::from_utf8_lossy(b))),
        manufacturer: text(&a.manufacturer),
        product: text(&a.product),
        port_path: clean_text(port_path)?,
        id_path: id_path.and_then(clean_text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn from_attributes() {
        let a = UsbAttrs {
            id_vendor: b"0d8c\n".to_vec(),
            id_product: b"0014\n".to_vec(),
            serial: Some(b"000000000000\n".to_vec()),
            manufacturer: Some(b"C-Media Electronics Inc.      \n".to_vec()),
            product: Some(b"USB Audio Device\xff\n".to_vec()),
        };
        let id = from_usb_attrs(&a, "1-2", None).unwrap();
        assert_eq!(id.vendor_product(), "0d8c:0014");
        assert_eq!(id.serial, None);
        assert_eq!(id.manufacturer.as_deref(), Some("C-Media Electronics Inc."));
        assert_eq!(id.product.as_deref(), Some("USB Audio Device\u{fffd}"));
        assert_eq!(id.port_path, "1-2");
        let not_usb = UsbAttrs {
            id_vendor: b"zzzz".to_vec(),
            ..a
        };
        assert_eq!(from_usb_attrs(&not_usb, "1-2", None), None);
    }
}
