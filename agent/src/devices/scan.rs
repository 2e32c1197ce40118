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

/// A fixture tree in the layout the kernel uses, for the unit tests here and the
/// end-to-end tests in `agent/tests/`. Not used by harkd itself. It panics on I/O
/// errors: it only ever writes into a test's temporary directory.
#[doc(hidden)]
#[allow(clippy::unwrap_used)]
pub mod fixture {
    use std::path::Path;

    /// The stream file of a CM108-style USB adapter (mono capture at 44.1 and
    /// 48 kHz, stereo playback), in the kernel's `proc.c` layout.
    pub const CM108_STREAM0: &str = "\
C-Media Electronics Inc. USB PnP Sound Device at usb-0000:00:14.0-1.4, full speed : USB Audio

Playback:
  Status: Stop
  Interface 1
    Altset 1
    Format: S16_LE
    Channels: 2
    Endpoint: 0x01 (1 OUT) (ADAPTIVE)
    Rates: 48000, 44100
    Bits: 16

Capture:
  Status: Stop
  Interface 2
    Altset 1
    Format: S16_LE
    Channels: 1
    Endpoint: 0x82 (2 IN) (ADAPTIVE)
    Rates: 48000, 44100
    Bits: 16
    Channel map: MONO
";

    pub struct UsbCard<'a> {
        pub index: u32,
        pub card_id: &'a str,
        /// e.g. "1-1.4"
        pub port: &'a str,
        pub vendor: &'a str,
        pub product_id: &'a str,
        pub serial: Option<&'a [u8]>,
        pub manufacturer: Option<&'a [u8]>,
        pub product: Option<&'a [u8]>,
        pub stream0: Option<&'a str>,
        pub capture: bool,
    }

    fn write(p: &Path, content: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Adds a USB card under `root/sys` and `root/proc`.
    pub fn usb_card(root: &Path, c: &UsbCard<'_>) {
        let bus = c.port.split('-').next().unwrap();
        let usb = root.join(format!(
            "sys/devices/pci0000:00/0000:00:14.0/usb{bus}/{}",
            c.port
        ));
        write(&usb.join("idVendor"), format!("{}\n", c.vendor).as_bytes());
        write(
            &usb.join("idProduct"),
            format!("{}\n", c.product_id).as_bytes(),
        );
        for (name, v) in [
            ("serial", c.serial),
            ("manufacturer", c.manufacturer),
            ("product", c.product),
        ] {
            if let Some(v) = v {
                let mut v = v.to_vec();
                v.push(b'\n');
                write(&usb.join(name), &v);
            }
        }
        let card = usb.join(format!("{}:1.0/sound/card{}", c.port, c.index));
        write(&card.join("id"), format!("{}\n", c.card_id).as_bytes());
        link_card(root, &card, c.index);
        let proc_card = root.join(format!("proc/asound/card{}", c.index));
        if let Some(s) = c.stream0 {
            write(&proc_card.join("stream0"), s.as_bytes());
        }
        write(&proc_card.join("id"), format!("{}\n", c.card_id).as_bytes());
        if c.capture {
            write(&proc_card.join("pcm0c/info"), b"card: 0\n");
        }
        write(&proc_card.join("pcm0p/info"), b"card: 0\n");
    }

    /// Adds a non-USB (PCI) card, e.g. onboard HDA audio.
    pub fn pci_card(root: &Path, index: u32, card_id: &str) {
        let card = root.join(format!(
            "sys/devices/pci0000:00/0000:00:1f.3/sound/card{index}"
        ));
        write(&card.join("id"), format!("{card_id}\n").as_bytes());
        link_card(root, &card, index);
        write(
            &root.join(format!("proc/asound/card{index}/pcm0c/info")),
            b"card\n",
        );
    }

    fn link_card(root: &Path, card: &Path, index: u32) {
        let class = root.join("sys/class/sound");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(card, class.join(format!("card{index}"))).unwrap();
    }

    pub fn remove_card(root: &Path, index: u32) {
        let link = root.join(format!("sys/class/sound/card{index}"));
        let real = std::fs::canonicalize(&link).unwrap();
        std::fs::remove_file(link).unwrap();
        std::fs::remove_dir_all(real).unwrap();
        std::fs::remove_dir_all(root.join(format!("proc/asound/card{index}"))).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

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
}
