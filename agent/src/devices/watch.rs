//! The device watcher: which sound cards are present (coldplug at start-up) and
//! which come and go (hotplug), reported as [`DeviceEvent`]s.
//!
//! Two sources behind one output: the udev monitor (the real edge; libudev gets
//! its events from udevd, after the rules ran) and an injected event stream read
//! from a file or FIFO (`harkd run --uevents PATH`, the test double), with lines
//! `add N`, `remove N` and `change N` for card N. Either way the card is read
//! from the sysfs/procfs roots, after waiting (bounded) for its capture PCM:
//! the kernel announces the card before its PCM nodes exist.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use super::scan::{self, Card, Roots, ScanError};

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    Added(Box<Card>),
    Removed { index: u32 },
}

/// How long an added card may take to show its capture PCM.
const PCM_WAIT: Duration = Duration::from_millis(1500);
/// Not shorter: each poll reads the card's files, and in a slow guest (QEMU's
/// TCG) polling every 5 ms starved the other mics' capture while one was
/// plugged in (hardware-tests' group-hotplug: underruns, dropouts).
const PCM_POLL: Duration = Duration::from_millis(25);

/// Reads card `index`, waiting up to [`PCM_WAIT`] for a capture PCM to appear.
/// A card that never gets one (a speaker) is returned as it is; a card that
/// vanished meanwhile is `None`.
pub fn read_when_ready(roots: &Roots, index: u32) -> Option<Card> {
    let deadline = Instant::now() + PCM_WAIT;
    loop {
        match scan::read_card(roots, index) {
            Err(ScanError::Gone { .. }) => {
                if Instant::now() >= deadline {
                    return None;
                }
            }
            Ok(card) => {
                let ready = card
                    .capture_pcms
                    .first()
                    .is_some_and(|pcm| openable(roots, index, *pcm));
                if ready || Instant::now() >= deadline {
                    return Some(with_hw_capabilities(roots, card));
                }
            }
        }
        std::thread::sleep(PCM_POLL);
    }
}

/// Whether the capture PCM's device node can be opened: udev creates the node and
/// sets its group after the kernel announced the PCM. Busy counts as openable
/// (it exists and is permitted; waiting will not free it). Opening a PCM node
/// without configuring it changes nothing on the device.
fn openable(roots: &Roots, card: u32, pcm: u32) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(dev) = &roots.devfs else { return true };
    const O_NONBLOCK: i32 = 0o4000;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(dev.join(format!("snd/pcmC{card}D{pcm}c")))
    {
        Ok(_) => true,
        Err(e) => e.raw_os_error() == Some(16), // EBUSY
    }
}

/// A card without a USB stream report (not USB) gets its capabilities from ALSA,
/// if its capture PCM is free; on a captured tree there is nothing to ask.
fn with_hw_capabilities(roots: &Roots, mut card: Card) -> Card {
    if card.identity.is_some() || !card.capture.is_empty() || roots.devfs.is_none() {
        return card;
    }
    let Some(pcm) = card.capture_pcms.first() else {
        return card;
    };
    match super::hwprobe::probe(&format!("hw:{},{pcm}", card.index)) {
        Ok(alt) => card.capture.push(alt),
        Err(e) => {
            tracing::info!(card = card.index, reason = %e, "capabilities not probed; negotiated at start")
        }
    }
    card
}

/// Every card present now.
pub fn coldplug(roots: &Roots) -> Vec<Card> {
    scan::list_cards(roots)
        .into_iter()
        .filter_map(|i| scan::read_card(roots, i).ok())
        .map(|c| with_hw_capabilities(roots, c))
        .collect()
}

/// The device path rehearsed before READY (see [`super::discover::rehearse`]):
/// a USB device's attributes read from sysfs, a made-up mic named and planned
/// under `cfg`; nothing kept. Says how long it took and what it decided.
pub fn rehearse(roots: &Roots, cfg: &crate::config::DevicesConfig) {
    let t = Instant::now();
    let usb = scan::any_usb_device(roots);
    let read = usb.is_some();
    use super::discover::{self, Decision};
    let outcome = match discover::rehearse(cfg, usb) {
        Decision::Stream { spec, .. } => format!("stream {}", spec.name),
        Decision::Ignore { reason } => format!("ignored: {reason}"),
        Decision::Unplayable { reason, .. } => format!("unplayable: {reason}"),
        Decision::Conflict { reason, .. } => format!("conflict: {reason}"),
    };
    tracing::debug!(
        took_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        usb_device_read = read,
        outcome = %outcome,
        "device path rehearsed"
    );
}

/// "card3" -> 3
fn card_index(sysname: &str) -> Option<u32> {
    sysname.strip_prefix("card")?.parse().ok()
}

/// Parses an injected event line: "add 3", "remove 3" (also "add card3").
pub fn parse_injected(line: &str) -> Option<(String, u32)> {
    let mut it = line.split_whitespace();
    let action = it.next()?.to_string();
    let card = it.next()?;
    let index = card.parse().ok().or_else(|| card_index(card))?;
    Some((action, index))
}

/// The event for an action on card `index` (`None`: nothing to report).
fn event_for(action: &str, index: u32, roots: &Roots) -> Option<DeviceEvent> {
    match action {
        "add" => match (Instant::now(), read_when_ready(roots, index)) {
            (t, Some(card)) => {
                tracing::debug!(
                    card = index,
                    waited_ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "add uevent: card read"
                );
                Some(DeviceEvent::Added(Box::new(card)))
            }
            (_, None) => {
                tracing::info!(card = index, "card went away before it could be read");
                None
            }
        },
        "remove" => Some(DeviceEvent::Removed { index }),
        // A renamed card (e.g. our own pinning) changes nothing we stream.
        _ => None,
    }
}

/// How often the injected reader looks for new lines and for its receiver gone.
const INJECTED_POLL: Duration = Duration::from_millis(20);

/// The injected-event reader's loop: non-blocking reads of the FIFO, so the
/// thread ends within [`INJECTED_POLL`] of its receiver going away (a blocking
/// open or read of a FIFO would wait forever for a writer).
fn read_injected(path: &std::path::Path, roots: &Roots, tx: &Sender<DeviceEvent>) {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the event file");
            return;
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while !tx.is_closed() {
        match file.read(&mut buf) {
            // No data (or no writer yet, or the writer left): look again soon.
            Ok(0) => std::thread::sleep(INJECTED_POLL),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(INJECTED_POLL);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the event file");
                return;
            }
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            match parse_injected(&line) {
                Some((action, index)) => {
                    let ev = event_for(&action, index, roots);
                    // Its own thread: it may wait for room in the queue.
                    if ev.is_some_and(|ev| tx.blocking_send(ev).is_err()) {
                        return;
                    }
                }
                None if line.trim().is_empty() => {}
                None => tracing::warn!(line = %line.trim_end(), "unreadable injected event"),
            }
        }
    }
}

/// Starts the injected-event reader ("hark-uevents" thread) on `path`.
pub fn spawn_injected(
    path: PathBuf,
    roots: Roots,
    tx: Sender<DeviceEvent>,
) -> std::io::Result<Watcher> {
    let (alive, ended) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("hark-uevents".into())
        .spawn(move || {
            let _alive = alive;
            read_injected(&path, &roots, &tx);
        })?;
    Ok(Watcher { ended, thread })
}

/// Resolves (with an error) when a watcher thread has ended, for whatever
/// reason, panics included: the daemon must not go on without hotplug.
pub type Ended = tokio::sync::oneshot::Receiver<()>;

/// A running watcher thread: `ended` resolves when it ends; the daemon joins
/// `thread` at shutdown (it ends once the receiver of its events is gone).
pub struct Watcher {
    pub ended: Ended,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the udev monitor on its own thread ("hark-udev"): libudev's monitor is
/// not thread-safe, so it lives and dies on one thread with a small event loop.
pub fn spawn_udev(roots: Roots, tx: Sender<DeviceEvent>) -> std::io::Result<Watcher> {
    spawn_udev_every(roots, tx, RESYNC)
}

fn spawn_udev_every(
    roots: Roots,
    tx: Sender<DeviceEvent>,
    resync: Duration,
) -> std::io::Result<Watcher> {
    let (alive, ended) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("hark-udev".into())
        .spawn(move || {
            // Dropped when this thread ends, by return or by panic.
            let _alive = alive;
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the udev event loop");
                    return;
                }
            };
            if let Err(e) = rt.block_on(watch_udev(roots, tx, resync)) {
                tracing::error!(error = %e, "udev monitor failed");
            }
        })?;
    Ok(Watcher { ended, thread })
}

/// How often the cards present are compared with what events said, to repair
/// anything lost (a receive-buffer overflow under load drops events silently).
const RESYNC: Duration = Duration::from_secs(30);

/// libudev's monitor socket buffer: large, so bursts (a hub with four mics) fit.
const RECEIVE_BUFFER: i32 = 4 << 20;

/// What tells one card on an index from another: the device's identity (or,
/// for cards that are not USB, their title), not the index, which the kernel
/// hands to the next card that comes.
#[derive(Debug, Clone, PartialEq)]
pub struct Print {
    identity: Option<super::identity::Identity>,
    title: Option<String>,
}

impl Print {
    pub fn of(card: &Card) -> Print {
        Print {
            identity: card.identity.clone(),
            title: card.title.clone(),
        }
    }
}

/// The cards present now, with their prints.
fn present(roots: &Roots) -> BTreeMap<u32, Print> {
    scan::list_cards(roots)
        .into_iter()
        .filter_map(|i| scan::read_card(roots, i).ok().map(|c| (i, Print::of(&c))))
        .collect()
}

/// What to announce so that what we were told matches what is there: removes
/// for cards gone, adds for new ones, and both for an index that now holds
/// another device (a mic that left and a different one that took its index,
/// both while events were lost).
pub fn resync_fixes(
    known: &BTreeMap<u32, Print>,
    now: &BTreeMap<u32, Print>,
) -> Vec<(String, u32)> {
    let mut fixes = Vec::new();
    for (index, print) in known {
        match now.get(index) {
            Some(p) if p == print => {}
            _ => fixes.push(("remove".to_string(), *index)),
        }
    }
    for (index, print) in now {
        if known.get(index) != Some(print) {
            fixes.push(("add".to_string(), *index));
        }
    }
    fixes
}

/// Watches udev for sound cards coming and going, until `tx` closes.
async fn watch_udev(
    roots: Roots,
    tx: Sender<DeviceEvent>,
    resync_every: Duration,
) -> std::io::Result<()> {
    let socket = udev::MonitorBuilder::new()?
        .match_subsystem("sound")?
        .listen()?;
    enlarge_buffer(&socket);
    let fd = register(socket)?;
    let mut known = present(&roots);
    let mut resync = tokio::time::interval(resync_every);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let events: Vec<(String, u32)> = tokio::select! {
            // The supervisor is gone: nothing to report to.
            _ = tx.closed() => return Ok(()),
            // Repair lost events: whatever differs from what we were told.
            _ = resync.tick() => {
                let fixes = resync_fixes(&known, &present(&roots));
                if !fixes.is_empty() {
                    tracing::warn!(fixes = fixes.len(), "device events were lost; resynchronised from sysfs");
                }
                fixes
            },
            // udev has events: drain them all.
            guard = fd.readable() => {
                let mut guard = guard?;
                let events = guard
                    .get_inner()
                    .iter()
                    .filter_map(|ev| {
                        let index = card_index(ev.sysname().to_str()?)?;
                        let action = ev.action()?.to_str()?.to_string();
                        Some((action, index))
                    })
                    .collect();
                guard.clear_ready();
                events
            }
        };
        for (action, index) in events {
            // This runs on its own thread (see `spawn_udev`), so waiting here for
            // the PCM nodes blocks nothing else.
            let ev = event_for(&action, index, &roots);
            match &ev {
                Some(DeviceEvent::Added(card)) => {
                    known.insert(index, Print::of(card));
                }
                Some(DeviceEvent::Removed { .. }) => {
                    known.remove(&index);
                }
                None if action == "add" => {
                    known.remove(&index);
                }
                None => {}
            }
            if let Some(ev) = ev
                && tx.send(ev).await.is_err()
            {
                return Ok(());
            }
        }
    }
}

#[allow(unsafe_code)]
fn enlarge_buffer(socket: &udev::MonitorSocket) {
    use udev::AsRaw;
    // SAFETY: the monitor pointer is valid for as long as `socket` lives, and
    // setting the buffer size only calls setsockopt on its descriptor.
    let rc = unsafe {
        libudev_sys::udev_monitor_set_receive_buffer_size(socket.as_raw(), RECEIVE_BUFFER)
    };
    if rc < 0 {
        tracing::warn!(
            rc,
            "cannot enlarge the udev receive buffer; bursts may be lost (and resynchronised)"
        );
    }
}

#[allow(unsafe_code)]
fn register(
    socket: udev::MonitorSocket,
) -> std::io::Result<tokio::io::unix::AsyncFd<udev::MonitorSocket>> {
    // SAFETY: the AsyncFd owns the socket, and the socket owns its descriptor, so
    // the descriptor stays open for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}

/// The root prefixes and event source chosen on the command line.
#[derive(Debug, Clone)]
pub struct Source {
    pub roots: Roots,
    /// Injected events instead of udev.
    pub injected: Option<PathBuf>,
}

impl Source {
    pub fn system() -> Source {
        Source {
            roots: Roots::system(),
            injected: None,
        }
    }

    pub fn describe(&self) -> String {
        match &self.injected {
            Some(p) => format!("injected events from {}", p.display()),
            None => "udev".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::fixture;

    /// A USB mic with a capture PCM and no stream file, on port 1-3.
    fn mic(index: u32) -> fixture::UsbCard<'static> {
        fixture::UsbCard {
            index,
            card_id: "Mic",
            port: "1-3",
            vendor: "1234",
            product_id: "5678",
            serial: None,
            manufacturer: None,
            product: Some(b"Mic"),
            stream0: None,
            capture: true,
        }
    }

    /// The next event, or a panic after `limit`: a regression fails the test
    /// instead of hanging `make test`.
    fn recv_within(
        rx: &mut tokio::sync::mpsc::Receiver<DeviceEvent>,
        limit: Duration,
    ) -> DeviceEvent {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match rx.try_recv() {
                Ok(ev) => return ev,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("no device event within {limit:?}: {e:?}"),
            }
        }
    }

    /// The udev monitor runs here (netlink needs no udevd), but nothing emits
    /// sound events on this machine: what it finds, it finds by resync.
    #[test]
    fn lost_events_are_repaired_by_resync() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::tree(dir.path().join("sys"), dir.path().join("proc"));
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        // The same thread and event loop harkd runs, only a faster resync.
        let Watcher { mut ended, thread } =
            spawn_udev_every(roots.clone(), tx, Duration::from_millis(100)).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        fixture::usb_card(dir.path(), &mic(4));
        let ev = recv_within(&mut rx, Duration::from_secs(10));
        assert!(
            matches!(ev, DeviceEvent::Added(ref c) if c.index == 4),
            "{ev:?}"
        );
        fixture::remove_card(dir.path(), 4);
        assert_eq!(
            recv_within(&mut rx, Duration::from_secs(10)),
            DeviceEvent::Removed { index: 4 }
        );
        fixture::usb_card(dir.path(), &mic(4));
        assert!(matches!(
            recv_within(&mut rx, Duration::from_secs(10)),
            DeviceEvent::Added(_)
        ));
        // A different mic takes index 4 between two looks: the old one is
        // removed and the new one added, though the set of indices is the same.
        fixture::remove_card(dir.path(), 4);
        fixture::usb_card(
            dir.path(),
            &fixture::UsbCard {
                port: "1-4",
                product: Some(b"Other"),
                ..mic(4)
            },
        );
        assert_eq!(
            recv_within(&mut rx, Duration::from_secs(10)),
            DeviceEvent::Removed { index: 4 }
        );
        let ev = recv_within(&mut rx, Duration::from_secs(10));
        assert!(
            matches!(ev, DeviceEvent::Added(ref c) if c.identity.as_ref().unwrap().port_path == "1-4"),
            "{ev:?}"
        );
        assert!(
            ended
                .try_recv()
                .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Empty)
        );
        drop(rx);
        // With nobody to report to, the watcher ends (at its next wake-up).
        let t = Instant::now();
        while !matches!(
            ended.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ) {
            assert!(t.elapsed() < Duration::from_secs(5), "watcher did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.join().unwrap();
    }

    #[test]
    fn resync_compares_devices_not_indices() {
        let print = |port: &str| Print {
            identity: Some(crate::devices::identity::Identity {
                vendor_id: 1,
                product_id: 2,
                serial: None,
                manufacturer: None,
                product: None,
                port_path: port.into(),
                id_path: None,
            }),
            title: None,
        };
        let known: BTreeMap<u32, Print> = [(1, print("1-1")), (2, print("1-2"))].into();
        assert!(resync_fixes(&known, &known.clone()).is_empty());
        let now: BTreeMap<u32, Print> =
            [(1, print("1-1")), (2, print("1-4")), (3, print("1-3"))].into();
        assert_eq!(
            resync_fixes(&known, &now),
            vec![
                ("remove".to_string(), 2),
                ("add".to_string(), 2),
                ("add".to_string(), 3)
            ]
        );
    }

    /// The injected reader ends once nobody listens, even with no writer on
    /// its FIFO (a blocking open would wait for one forever).
    #[test]
    fn the_injected_reader_ends_without_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("uevents");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let roots = Roots::tree(dir.path().join("sys"), dir.path().join("proc"));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let w = spawn_injected(fifo, roots, tx).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(rx);
        let t = Instant::now();
        while !w.thread.is_finished() {
            assert!(t.elapsed() < Duration::from_secs(5), "reader did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        w.thread.join().unwrap();
    }

    #[test]
    fn waits_for_the_device_node_when_there_is_a_devfs() {
        let dir = tempfile::tempdir().unwrap();
        let mut roots = Roots::tree(dir.path().join("sys"), dir.path().join("proc"));
        roots.devfs = Some(dir.path().join("dev"));
        assert!(!openable(&roots, 1, 0));
        let d = dir.path().to_path_buf();
        fixture::usb_card(dir.path(), &mic(1));
        let node = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::create_dir_all(d.join("dev/snd")).unwrap();
            std::fs::write(d.join("dev/snd/pcmC1D0c"), b"").unwrap();
        });
        let t = Instant::now();
        let card = read_when_ready(&roots, 1).unwrap();
        node.join().unwrap();
        assert!(openable(&roots, 1, 0));
        assert_eq!(card.capture_pcms, vec![0]);
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < PCM_WAIT,
            "{waited:?}"
        );
    }

    #[test]
    fn injected_lines() {
        assert_eq!(parse_injected("add 3"), Some(("add".into(), 3)));
        assert_eq!(parse_injected("remove card12"), Some(("remove".into(), 12)));
        assert_eq!(parse_injected("add"), None);
        assert_eq!(parse_injected("add x"), None);
    }

    #[test]
    fn waits_for_the_capture_pcm_then_gives_up_on_a_speaker() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::tree(dir.path().join("sys"), dir.path().join("proc"));
        // A speaker: no capture PCM ever; returned after the bounded wait.
        fixture::usb_card(
            dir.path(),
            &fixture::UsbCard {
                index: 1,
                card_id: "Speaker",
                port: "1-2",
                vendor: "1234",
                product_id: "5678",
                serial: None,
                manufacturer: None,
                product: Some(b"Speaker"),
                stream0: None,
                capture: false,
            },
        );
        let t = Instant::now();
        let card = read_when_ready(&roots, 1).unwrap();
        assert!(card.capture_pcms.is_empty());
        assert!(t.elapsed() >= PCM_WAIT);
        // A card that never appears.
        assert_eq!(read_when_ready(&roots, 7), None);
        // A card whose PCM appears a little later is read as soon as it does.
        let d = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::create_dir_all(d.join("proc/asound/card1/pcm0c")).unwrap();
        });
        let t = Instant::now();
        let card = read_when_ready(&roots, 1).unwrap();
        writer.join().unwrap();
        assert_eq!(card.capture_pcms, vec![0]);
        assert!(t.elapsed() < Duration::from_millis(1000));
    }
}
