//! A fixture tree in the layout the kernel uses (`/sys/class/sound`,
//! `/proc/asound`), for the unit tests of `devices/` and the end-to-end tests
//! in `agent/tests/` (which include this file with `#[path]`). Not part of
//! harkd: the library builds it only for its own tests. It panics on I/O
//! errors: it only ever writes into a test's temporary directory.

#![allow(clippy::unwrap_used, dead_code)]

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
