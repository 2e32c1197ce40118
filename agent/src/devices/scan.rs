//! Reading what the kernel says about sound cards, under a root prefix: `/sys`
//! (card id, the USB parent's attributes, its port) and `/proc` (`asound/cardN`:
//! capture PCMs and the USB stream capabilities). Nothing here opens a device,
//! so probing never disturbs a card that is in use.
//!
//! Roots are parameters so that tests and `harkd probe` can read fixture trees
//! or trees captured from other machines.

use std::fs;
use std::path::{Path, PathBuf};

use super::asound::{self, AltSetting};
use super::identity::{self, Identity, UsbAttrs};

/// Where `/sys` and `/proc` are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub sysfs: PathBuf,
    pub procfs: PathBuf,
    /// Where the device nodes are, to check a capture PCM can be opened before it
    /// is used; `None` for captured trees, which have no device nodes.
    pub devfs: Option<PathBuf>,
}

impl Roots {
    pub fn system() -> Roots {
        Roots {
            sysfs: PathBuf::from("/sys"),
            procfs: PathBuf::from("/proc"),
            devfs: Some(PathBuf::from("/dev")),
        }
    }

    /// A captured or fixture tree: `/sys` and `/proc` only.
    pub fn tree(sysfs: PathBuf, procfs: PathBuf) -> Roots {
        Roots {
            sysfs,
            procfs,
            devfs: None,
        }
    }

    fn card_sys(&self, index: u32) -> PathBuf {
        self.sysfs.join(format!("class/sound/card{index}"))
    }

    fn card_proc(&self, index: u32) -> PathBuf {
        self.procfs.join(format!("asound/card{index}"))
    }
}

/// One sound card as read from the trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub index: u32,
    /// The ALSA card id (`hw:CARD=<id>`).
    pub card_id: String,
    /// `None` for cards that are not USB devices (onboard, HDMI, snd-aloop).
    pub identity: Option<Identity>,
    /// The first line of `stream0`, when there is one.
    pub title: Option<String>,
    /// Capture alternate settings from every `stream*` file.
    pub capture: Vec<AltSetting>,
    /// PCM device numbers that can capture (`pcm0c` -> 0).
    pub capture_pcms: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    /// The card went away between the event and the probe (or never was).
    #[error("card {index} is gone")]
    Gone { index: u32 },
}

/// Card indices present now, in order.
pub fn list_cards(roots: &Roots) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(roots.sysfs.join("class/sound")) else {
        return vec![];
    };
    let mut out: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("card")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

fn read_trimmed(p: &Path) -> Option<String> {
    fs::read(p)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
}

fn read_attrs(usb: &Path) -> Option<UsbAttrs> {
    let raw = |name: &str| fs::read(usb.join(name)).ok();
    Some(UsbAttrs {
        id_vendor: raw("idVendor")?,
        id_product: raw("idProduct")?,
        serial: raw("serial"),
        manufacturer: raw("manufacturer"),
        product: raw("product"),
    })
}

/// The USB device directory above a card: `.../1-1.4/1-1.4:1.0/sound/card1`
/// gives `.../1-1.4`.
fn usb_parent(card_dir: &Path) -> Option<PathBuf> {
    let real = fs::canonicalize(card_dir).ok()?;
    let usb = real.parent()?.parent()?.parent()?;
    usb.join("idVendor").exists().then(|| usb.to_path_buf())
}

/// The attributes and port of the first USB device the kernel lists (a root
/// hub on any machine with USB), or `None`.
pub fn any_usb_device(roots: &Roots) -> Option<(String, UsbAttrs)> {
    let dir = fs::read_dir(roots.sysfs.join("bus/usb/devices")).ok()?;
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.contains(':'))
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let attrs = read_attrs(&roots.sysfs.join("bus/usb/devices").join(&name))?;
        Some((name, attrs))
    })
}

/// Reads one card. Partial information (a truncated stream file, missing
/// attributes) is returned as far as it goes; only a missing card is an error.
pub fn read_card(roots: &Roots, index: u32) -> Result<Card, ScanError> {
    let sys = roots.card_sys(index);
    if !sys.exists() {
        return Err(ScanError::Gone { index });
    }
    let card_id = read_trimmed(&sys.join("id")).unwrap_or_default();
    let identity = usb_parent(&sys).and_then(|usb| {
        let attrs = read_attrs(&usb)?;
        let port = usb.file_name()?.to_str()?.to_string();
        identity::from_usb_attrs(&attrs, &port, None)
    });
    let proc_dir = roots.card_proc(index);
    let mut stream_files: Vec<(u32, PathBuf)> = Vec::new();
    let mut capture_pcms = Vec::new();
    if let Ok(dir) = fs::read_dir(&proc_dir) {
        for e in dir.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name.strip_prefix("stream").and_then(|n| n.parse().ok()) {
                stream_files.push((n, e.path()));
            } else if let Some(n) = name
                .strip_prefix("pcm")
                .and_then(|r| r.strip_suffix('c'))
                .and_then(|n| n.parse().ok())
            {
                capture_pcms.push(n);
            }
        }
    }
    stream_files.sort();
    capture_pcms.sort_unstable();
    let mut title = None;
    let mut capture = Vec::new();
    for (_, path) in stream_files {
        let Ok(bytes) = fs::read(&path) else { continue };
        let parsed = asound::parse_stream(&String::from_utf8_lossy(&bytes));
        title.get_or_insert(parsed.title);
        capture.extend(parsed.capture);
    }
    if !sys.exists() {
        // It vanished while we read it: what we read may be half a card.
        return Err(ScanError::Gone { index });
    }
    Ok(Card {
        index,
        card_id,
        identity,
        title: title.filter(|t| !t.is_empty()),
        capture,
        capture_pcms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::fixture::*;

    fn roots(dir: &Path) -> Roots {
        Roots::tree(dir.join("sys"), dir.join("proc"))
    }

    fn cm108(index: u32, port: &'static str) -> UsbCard<'static> {
        UsbCard {
            index,
            card_id: "Device",
            port,
            vendor: "0d8c",
            product_id: "013c",
            serial: None,
            manufacturer: Some(b"C-Media Electronics Inc.      "),
            product: Some(b"USB PnP Sound Device"),
            stream0: Some(CM108_STREAM0),
            capture: true,
        }
    }

    #[test]
    fn reads_usb_and_onboard_cards() {
        let dir = tempfile::tempdir().unwrap();
        pci_card(dir.path(), 0, "PCH");
        usb_card(dir.path(), &cm108(1, "1-1.4"));
        let r = roots(dir.path());
        assert_eq!(list_cards(&r), vec![0, 1]);
        let onboard = read_card(&r, 0).unwrap();
        assert_eq!(
            (onboard.card_id.as_str(), onboard.identity.as_ref()),
            ("PCH", None)
        );
        let mic = read_card(&r, 1).unwrap();
        let id = mic.identity.unwrap();
        assert_eq!(id.vendor_product(), "0d8c:013c");
        assert_eq!(id.port_path, "1-1.4");
        assert_eq!(id.product.as_deref(), Some("USB PnP Sound Device"));
        assert_eq!(mic.capture.len(), 1);
        assert_eq!(mic.capture_pcms, vec![0]);
        assert!(mic.title.unwrap().starts_with("C-Media"));
    }

    #[test]
    fn hostile_strings_and_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cm108(2, "2-1");
        c.serial = Some(b"  has spaces / slashes \"quotes\" \xff\xfe ");
        c.product = Some(b"");
        c.stream0 =
            Some("truncated at usb-1, full speed : USB Audio\n\nCapture:\n  Interface 2\n    Alts");
        c.capture = false;
        usb_card(dir.path(), &c);
        let card = read_card(&roots(dir.path()), 2).unwrap();
        let id = card.identity.unwrap();
        assert_eq!(
            id.serial.as_deref(),
            Some("has spaces / slashes \"quotes\" \u{fffd}\u{fffd}")
        );
        assert_eq!(id.product, None);
        assert!(card.capture.is_empty());
        assert!(card.capture_pcms.is_empty());
    }

    #[test]
    fn a_card_that_is_gone_says_so() {
        let dir = tempfile::tempdir().unwrap();
        usb_card(dir.path(), &cm108(3, "1-2"));
        let r = roots(dir.path());
        assert!(read_card(&r, 3).is_ok());
        remove_card(dir.path(), 3);
        assert_eq!(read_card(&r, 3), Err(ScanError::Gone { index: 3 }));
        assert!(list_cards(&r).is_empty());
        assert!(list_cards(&roots(Path::new("/nonexistent"))).is_empty());
    }

    #[test]
    fn any_usb_device_reads_the_first_device_and_skips_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        assert_eq!(any_usb_device(&r), None);
        let devices = dir.path().join("sys/bus/usb/devices");
        for (name, vendor) in [("1-0:1.0", None), ("usb2", Some("1d6b")), ("usb1", None)] {
            let d = devices.join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(v) = vendor {
                std::fs::write(d.join("idVendor"), format!("{v}\n")).unwrap();
                std::fs::write(d.join("idProduct"), "0003\n").unwrap();
                std::fs::write(d.join("product"), "xHCI Host Controller\n").unwrap();
            }
        }
        // usb1 has no attributes (not a device we can read): usb2 is taken.
        let (port, attrs) = any_usb_device(&r).unwrap();
        assert_eq!(port, "usb2");
        assert_eq!(attrs.id_vendor, b"1d6b\n");
        assert_eq!(
            attrs.product.as_deref(),
            Some(&b"xHCI Host Controller\n"[..])
        );
        assert_eq!(attrs.serial, None);
    }
}
