//! Streams follow devices, end to end with the real binary: device events are
//! injected (`--uevents`) against a fixture sysfs/procfs tree whose card is
//! captured through the FIFO-backed userspace PCM, and a real RTSP client checks
//! that the stream appears under the expected name, ends on removal, and returns
//! under the same name on re-add. Real udev events run in the QEMU tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::fixture;
use common::{FifoMic, Harkd, ffmpeg_pull, is_event, msg};

struct Rig {
    mic: FifoMic,
    tree: tempfile::TempDir,
    events: std::fs::File,
    h: Harkd,
}

impl Rig {
    fn start() -> Rig {
        Self::start_in(Self::tree(), None)
    }

    /// Starts harkd on an existing tree (cards already in it are coldplugged),
    /// on a private D-Bus bus if one is given.
    fn start_in(tree: tempfile::TempDir, bus: Option<&common::bus::Bus>) -> Rig {
        Self::start_with(tree, bus, "")
    }

    /// `start_in` with more configuration (`[[device]]` rules, say).
    fn start_with(tree: tempfile::TempDir, bus: Option<&common::bus::Bus>, extra: &str) -> Rig {
        Self::start_full(tree, bus, extra, &[], &[])
    }

    /// `start_with` plus environment and `run` options.
    fn start_full(
        tree: tempfile::TempDir,
        bus: Option<&common::bus::Bus>,
        extra: &str,
        more_env: &[(&str, &str)],
        more_args: &[(&str, &str)],
    ) -> Rig {
        let mic = FifoMic::new(700.0, 0.25);
        let fifo = tree.path().join("uevents");
        let state = tree.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let config = format!(
            "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[devices]\nstate_dir = \"{}\"\nalsa_device = \"{}\"\n{extra}",
            state.display(),
            mic.device
        );
        let sys = tree.path().join("sys");
        let proc = tree.path().join("proc");
        let fifo_s = fifo.display().to_string();
        let mut args = vec![
            ("--sysfs-root", sys.to_str().unwrap()),
            ("--procfs-root", proc.to_str().unwrap()),
            ("--uevents", fifo_s.as_str()),
        ];
        let mut env = vec![("ALSA_CONFIG_PATH", mic.alsa_config_path.as_str())];
        if let Some(b) = bus {
            args.push(("--bus", "session"));
            env.push(("DBUS_SESSION_BUS_ADDRESS", b.address.as_str()));
        }
        env.extend_from_slice(more_env);
        args.extend_from_slice(more_args);
        let h = Harkd::start_with_args(&config, &env, &args);
        // Opening the FIFO for writing waits for harkd to open it for reading.
        let events = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        Rig {
            mic,
            tree,
            events,
            h,
        }
    }

    /// An empty tree with the event FIFO, for `start_with`.
    fn tree() -> tempfile::TempDir {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("sys/class/sound")).unwrap();
        std::fs::create_dir_all(tree.path().join("proc/asound")).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(tree.path().join("uevents"))
                .status()
                .unwrap()
                .success()
        );
        tree
    }

    /// Puts a card in the tree without announcing it (present at start-up).
    fn place(tree: &std::path::Path, index: u32, port: &str, serial: Option<&[u8]>) {
        fixture::usb_card(
            tree,
            &fixture::UsbCard {
                index,
                card_id: "Device",
                port,
                vendor: "0d8c",
                product_id: "013c",
                serial,
                manufacturer: Some(b"C-Media Electronics Inc."),
                product: Some(b"USB PnP Sound Device"),
                stream0: Some(fixture::CM108_STREAM0),
                capture: true,
            },
        );
    }

    /// The devices in the status endpoint's JSON, by card.
    fn device_status(&self, card: u64) -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&common::http_get(self.h.http_port, "/api/v1/status")).unwrap();
        status["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["card"] == card)
            .cloned()
            .unwrap_or_else(|| panic!("no card {card} in {status}"))
    }

    fn plug(&mut self, index: u32, port: &str, serial: Option<&[u8]>) {
        Self::place(self.tree.path(), index, port, serial);
        writeln!(self.events, "add {index}").unwrap();
        self.events.flush().unwrap();
    }

    fn unplug(&mut self, index: u32) {
        fixture::remove_card(self.tree.path(), index);
        writeln!(self.events, "remove {index}").unwrap();
        self.events.flush().unwrap();
    }
}

/// Every task the agent runs is owned: the device watcher ending (here its
/// event source cannot be read: a directory where the event FIFO should be,
/// as a netlink socket error would end it on a board) ends the agent with an
/// error that names it, so systemd restarts it, instead of leaving an agent
/// that no longer sees hotplug.
#[test]
fn the_device_watcher_ending_ends_the_agent_with_a_clear_error() {
    let tree = Rig::tree();
    let not_a_fifo = tree.path().join("events-dir");
    std::fs::create_dir(&not_a_fifo).unwrap();
    let state = tree.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = tree.path().join("hark.toml");
    std::fs::write(
        &config,
        format!(
            "[rtsp]\nbind = \"127.0.0.1\"\nport = {}\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n[devices]\nstate_dir = \"{}\"\n",
            common::free_port(),
            common::free_port(),
            state.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(common::HARKD)
        .args(["run", "--bus", "none", "--config"])
        .arg(&config)
        .arg("--sysfs-root")
        .arg(tree.path().join("sys"))
        .arg("--procfs-root")
        .arg(tree.path().join("proc"))
        .arg("--uevents")
        .arg(&not_a_fifo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_timeout(&mut child, Duration::from_secs(15));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    let status = status
        .unwrap_or_else(|| panic!("harkd kept running without its device watcher; log:\n{log}"));
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("the device watcher ended"),
        "no error naming the watcher; log:\n{log}"
    );
}

#[test]
fn a_mic_streams_under_its_name_ends_on_unplug_and_returns_on_replug() {
    let mut rig = Rig::start();
    let _ = &rig.mic;
    let name = "usb-pnp-sound-device";

    // Plug: the stream appears under the name from the product string.
    let mark = rig.h.mark();
    let plugged = Instant::now();
    rig.plug(1, "1-1.4", Some(b"SN-0001"));
    let added = rig
        .h
        .wait_log_after(mark, Duration::from_secs(5), |v| msg(v) == "device added");
    assert_eq!(added["stream"], name, "{added}");
    assert_eq!(added["vendor_product"], "0d8c:013c");
    assert_eq!(added["serial"], "SN-0001");
    rig.h.wait_log_after(mark, Duration::from_secs(5), |v| {
        is_event(v, "audio is flowing", name)
    });
    let url = rig.h.url(name);
    let t = Instant::now();
    let status = loop {
        match common::rtsp_client::Client::connect(&url, Duration::from_secs(2))
            .and_then(|mut c| c.play().map(|_| 200))
        {
            Ok(s) => break s,
            Err(_) if t.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no PLAY: {e}"),
        }
    };
    assert_eq!(status, 200);
    eprintln!("add event to PLAY answered: {:?}", plugged.elapsed());
    ffmpeg_pull(&url, "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);

    // The ALSA card id was pinned to the name, and the ledger remembers it.
    let id = std::fs::read_to_string(rig.tree.path().join("sys/class/sound/card1/id")).unwrap();
    assert_eq!(id, "usb_pnp_sound_d");
    let ledger = std::fs::read_to_string(rig.tree.path().join("state/names.json")).unwrap();
    assert!(
        ledger.contains(name) && ledger.contains("SN-0001"),
        "{ledger}"
    );
    // The device path was rehearsed before READY (a made-up mic: this tree has
    // no USB devices), through to a stream, and left no name behind.
    let rehearsed = rig.h.logs_after(0, |v| msg(v) == "device path rehearsed");
    assert_eq!(rehearsed.len(), 1, "{}", rig.h.raw_log());
    assert_eq!(
        rehearsed[0]["outcome"], "stream rehearsal-mic",
        "{}",
        rehearsed[0]
    );
    let pos = |m: &str| rig.h.raw_log().find(m).unwrap();
    assert!(pos("device path rehearsed") < pos("harkd ready"));
    assert!(!ledger.contains("rehearsal"), "{ledger}");

    // Unplug with a client playing: the stream ends at once, the client ends.
    let mut client = common::FfmpegClient::start(&url, "udp");
    client.wait_audio(0.5, Duration::from_secs(30));
    let mark = rig.h.mark();
    let unplugged = Instant::now();
    rig.unplug(1);
    rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "stream removed", name)
    });
    let unmounted = rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "unmounted", name)
    });
    assert_eq!(unmounted["clients_closed"], 1, "{unmounted}");
    // Nominally at once; 8 s is short of ffmpeg's own 10 s give-up on a silent
    // UDP session, so a client left starved cannot pass for one that was ended.
    assert!(
        client.wait_exit(Duration::from_secs(8)).is_some(),
        "client still running 8 s after the unplug"
    );
    eprintln!(
        "FIGURE unplug: the client ended {:?} after the unplug",
        unplugged.elapsed()
    );
    assert_eq!(common::rtsp_client::describe_probe(&url).unwrap(), 404);
    // No restart loop against the missing device: watching for 2 s is the test.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        rig.h
            .logs_after(mark, |v| is_event(v, "restarting capture", name))
            .is_empty()
    );

    // Replug into another port, as another card number: same serial, same name.
    let mark = rig.h.mark();
    rig.plug(2, "1-1.2", Some(b"SN-0001"));
    let added = rig
        .h
        .wait_log_after(mark, Duration::from_secs(5), |v| msg(v) == "device added");
    assert_eq!(added["stream"], name);
    assert_eq!(added["why"], "Serial");
    rig.h.wait_log_after(mark, Duration::from_secs(5), |v| {
        is_event(v, "audio is flowing", name)
    });
    ffmpeg_pull(&url, "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
}

#[test]
fn serialless_twins_are_told_apart_by_port_and_names_survive_a_restart() {
    let mut rig = Rig::start();
    // A serial-less mic on 1-1.3: its name is remembered by port.
    let mark = rig.h.mark();
    rig.plug(1, "1-1.3", None);
    let first = rig
        .h
        .wait_log_after(mark, Duration::from_secs(5), |v| msg(v) == "device added");
    assert_eq!(first["stream"], "usb-pnp-sound-device");
    rig.unplug(1);
    // The same model on a new port while the first is away: the only candidate,
    // so taken as the same mic, moved.
    let mark = rig.h.mark();
    rig.plug(2, "1-1.5", None);
    let moved = rig
        .h
        .wait_log_after(mark, Duration::from_secs(5), |v| msg(v) == "device added");
    assert_eq!(
        (moved["stream"].as_str(), moved["why"].as_str()),
        (Some("usb-pnp-sound-device"), Some("Moved"))
    );
    // A second one on 1-1.3 while that name is in use: a twin, a new name.
    let mark = rig.h.mark();
    rig.plug(3, "1-1.3", None);
    let twin = rig
        .h
        .wait_log_after(mark, Duration::from_secs(5), |v| msg(v) == "device added");
    assert_eq!(twin["stream"], "usb-pnp-sound-device-2", "{twin}");

    // Restart with both present, numbered the other way round by the kernel:
    // coldplug gives each its name back by port.
    let Rig {
        tree, events, h, ..
    } = rig;
    drop(events);
    let (status, _) = h.stop();
    assert!(status.success());
    let (a, b) = (
        tree.path().join("sys/class/sound/card2"),
        tree.path().join("sys/class/sound/card3"),
    );
    let tmp = tree.path().join("sys/class/sound/tmp");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let rig = Rig::start_in(tree, None);
    let added = rig.h.wait_log(Duration::from_secs(5), |v| {
        msg(v) == "device added" && v["port"] == "1-1.3"
    });
    assert_eq!(
        (
            added["stream"].as_str(),
            added["why"].as_str(),
            added["card"].as_u64()
        ),
        (Some("usb-pnp-sound-device-2"), Some("Port"), Some(2))
    );
    let added = rig.h.wait_log(Duration::from_secs(5), |v| {
        msg(v) == "device added" && v["port"] == "1-1.5"
    });
    assert_eq!(
        (added["stream"].as_str(), added["why"].as_str()),
        (Some("usb-pnp-sound-device"), Some("Port"))
    );
    rig.h.wait_log(Duration::from_secs(5), |v| {
        is_event(v, "audio is flowing", "usb-pnp-sound-device")
    });
}

/// Two identical mics that one `[[device]]` rule matches: the one on the lower
/// port gets the rule's name and streams; the other is not silently dropped
/// but reported as a conflict with the reason, and takes the name when the
/// first one is unplugged.
#[test]
fn a_rule_matching_two_mics_streams_one_and_says_why_not_the_other() {
    let tree = Rig::tree();
    Rig::place(tree.path(), 1, "1-1.3", None);
    Rig::place(tree.path(), 2, "1-1.2", None);
    let rule = "\n[[device]]\nname = \"attic\"\nvendor_product = \"0d8c:013c\"\n";
    let mut rig = Rig::start_with(tree, None, rule);
    rig.h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "attic")
    });
    let conflict = rig.h.wait_log(Duration::from_secs(10), |v| {
        msg(v) == "device not streamed: name conflict"
    });
    assert_eq!(conflict["card"], 1, "{conflict}");
    let holder = rig.device_status(2);
    assert_eq!(
        (holder["status"].as_str(), holder["name"].as_str()),
        (Some("streaming"), Some("attic"))
    );
    let other = rig.device_status(1);
    assert_eq!(other["status"], "conflict", "{other}");
    assert!(
        other["reason"].as_str().unwrap().contains("port 1-1.2"),
        "{other}"
    );
    ffmpeg_pull(&rig.h.url("attic"), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
    // The holder leaves: the other mic takes the name and streams under it.
    let mark = rig.h.mark();
    rig.unplug(2);
    let added = rig
        .h
        .wait_log_after(mark, Duration::from_secs(10), |v| msg(v) == "device added");
    assert_eq!(
        (added["stream"].as_str(), added["card"].as_u64()),
        (Some("attic"), Some(1))
    );
    rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "attic")
    });
}

/// Twins sharing a serial number, present at boot, keep the names coldplug
/// gave them when they are later plugged in one at a time, in either order.
#[test]
fn duplicate_serial_twins_named_at_boot_keep_their_names_when_plugged_later() {
    let tree = Rig::tree();
    Rig::place(tree.path(), 1, "1-1.2", Some(b"0001"));
    Rig::place(tree.path(), 2, "1-1.3", Some(b"0001"));
    let rig = Rig::start_with(tree, None, "");
    let mut at_boot = std::collections::BTreeMap::new();
    for port in ["1-1.2", "1-1.3"] {
        let added = rig.h.wait_log(Duration::from_secs(10), |v| {
            msg(v) == "device added" && v["port"] == port
        });
        at_boot.insert(port, added["stream"].as_str().unwrap().to_string());
    }
    assert_ne!(at_boot["1-1.2"], at_boot["1-1.3"]);
    let Rig {
        tree, events, h, ..
    } = rig;
    drop(events);
    assert!(h.stop().0.success());
    fixture::remove_card(tree.path(), 1);
    fixture::remove_card(tree.path(), 2);
    // The twin on 1-1.3 comes back first, alone, then the other.
    let mut rig = Rig::start_with(tree, None, "");
    for (index, port) in [(4, "1-1.3"), (5, "1-1.2")] {
        let mark = rig.h.mark();
        rig.plug(index, port, Some(b"0001"));
        let added = rig
            .h
            .wait_log_after(mark, Duration::from_secs(10), |v| msg(v) == "device added");
        assert_eq!(
            added["stream"].as_str(),
            Some(at_boot[port].as_str()),
            "{port}: {added}"
        );
    }
}

/// The name ledger is written off the supervisor's loop: with every state
/// write taking 6 s (the test hook), a mic plugged in is named, streamed and
/// heard, and the agent answers, all before its name reaches the disk. The
/// watchdog's probe is answered by that same loop, so it stays fed too.
#[test]
fn a_slow_state_disk_holds_up_neither_the_streams_nor_the_agent() {
    let mut rig = Rig::start_full(
        Rig::tree(),
        None,
        "",
        &[("HARK_TEST_SLOW_STORE_MS", "6000")],
        &[("--test-hooks", "")],
    );
    let names = rig.tree.path().join("state/names.json");
    let name = "usb-pnp-sound-device";
    let mark = rig.h.mark();
    rig.plug(1, "1-1.4", Some(b"SN-0001"));
    rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", name)
    });
    ffmpeg_pull(&rig.h.url(name), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
    assert_eq!(rig.device_status(1)["status"], "streaming");
    assert!(
        !names.exists(),
        "the name reached the disk before the stream played: the write held the loop"
    );
    // The write lands in the end, with the name in it.
    common::wait_until(Duration::from_secs(30), "names.json to be written", || {
        names.exists()
    });
    let ledger = std::fs::read_to_string(&names).unwrap();
    assert!(ledger.contains(name), "{ledger}");
    // A second plug while a write is under way: named and streamed as well.
    let mark = rig.h.mark();
    rig.plug(2, "1-1.5", Some(b"SN-0002"));
    rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "usb-pnp-sound-device-2")
    });
}

/// A reload applies new encoding settings to mics already streaming: the
/// stream restarts with them (it used to keep the old ones without a word).
#[test]
fn a_reload_applies_new_settings_to_a_streaming_mic() {
    let mut rig = Rig::start();
    let name = "usb-pnp-sound-device";
    let mark = rig.h.mark();
    rig.plug(1, "1-1.4", Some(b"SN-0001"));
    rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", name)
    });
    let url = rig.h.url(name);
    assert_eq!(common::describe_audio(&url).encoding, "OPUS");
    let text = std::fs::read_to_string(rig.h.config_path()).unwrap();
    let mark = rig.h.mark();
    rig.h
        .reload(&format!("{text}\n[defaults]\ncodec = \"l16\"\n"));
    let line = rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        msg(v) == "configuration reloaded"
    });
    assert!(
        line["report"].as_str().unwrap().contains("1 changed"),
        "{line}"
    );
    rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", name)
    });
    let sdp = common::describe_audio(&url);
    assert_eq!(
        (sdp.encoding.as_str(), sdp.clock_rate),
        ("L16", 48_000),
        "{sdp:?}"
    );
    ffmpeg_pull(&url, "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
}

/// A plugged mic appears on D-Bus with its device's properties (InterfacesAdded),
/// and goes away on unplug (InterfacesRemoved).
#[test]
fn a_plugged_mic_appears_on_dbus_and_leaves_on_unplug() {
    let bus = common::bus::Bus::open();
    let mut rig = Rig::start_in(Rig::tree(), Some(&bus));
    rig.h
        .wait_log(Duration::from_secs(10), |v| msg(v) == "D-Bus name taken");
    let monitor = bus.monitor_object_manager();
    let path = "/org/hark/Agent1/device/usb_2dpnp_2dsound_2ddevice";
    rig.plug(1, "1-1.4", Some(b"SN-0001"));
    monitor.wait_for("InterfacesAdded", |s| {
        s.contains("member=InterfacesAdded") && s.contains(path)
    });
    let get = |prop: &str| {
        bus.busctl(&[
            "get-property",
            "org.hark.Agent1",
            path,
            "org.hark.Device1",
            prop,
        ])
        .1
        .trim()
        .to_string()
    };
    assert_eq!(get("Serial"), "s \"SN-0001\"");
    assert_eq!(get("VendorId"), format!("q {}", 0x0d8c));
    assert_eq!(get("ProductId"), format!("q {}", 0x013c));
    assert_eq!(get("PortPath"), "s \"1-1.4\"");
    assert_eq!(get("Card"), "i 1");
    assert_eq!(get("CardId"), "s \"usb_pnp_sound_d\"");
    assert_eq!(get("Formats"), "as 1 \"S16_LE\"");
    assert_eq!(get("Rates"), "au 2 44100 48000");
    assert_eq!(get("Channels"), "u 1");
    rig.unplug(1);
    monitor.wait_for("InterfacesRemoved", |s| {
        s.contains("member=InterfacesRemoved") && s.matches(path).count() >= 2
    });
    let (_, tree) = bus.busctl(&["tree", "org.hark.Agent1"]);
    assert!(!tree.contains(path), "{tree}");
}

/// Device churn leaks nothing: after a warm-up, a few hundred add/remove cycles
/// (every tenth with an RTSP client that PLAYs before the unplug) leave harkd with
/// the file descriptors and threads it had before, and its RSS within a bound.
/// `HARK_CHURN_CYCLES` changes the count (default 300).
#[test]
fn device_churn_leaks_no_fds_threads_or_memory() {
    let cycles: u32 = std::env::var("HARK_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rig = Rig::start();
    let name = "usb-pnp-sound-device";
    let url = rig.h.url(name);
    let cycle = |rig: &mut Rig, i: u32| {
        let mark = rig.h.mark();
        rig.plug(1, "1-1.4", Some(b"SN-0001"));
        rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
            is_event(v, "capture started", name)
        });
        if i.is_multiple_of(10) {
            rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
                is_event(v, "audio is flowing", name)
            });
            let mut c = common::rtsp_client::Client::connect(&url, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("cycle {i}: connect: {e}"));
            c.play().unwrap_or_else(|e| panic!("cycle {i}: PLAY: {e}"));
            // The client stays connected through the unplug, as a listener would.
            rig.unplug(1);
            rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
                is_event(v, "stream removed", name)
            });
            drop(c);
        } else {
            rig.unplug(1);
            rig.h.wait_log_after(mark, Duration::from_secs(10), |v| {
                is_event(v, "stream removed", name)
            });
        }
    };
    // Warm-up: allocator arenas, GStreamer's registry and thread pools settle
    // (RSS grows about 400 KiB over the first 100 cycles, then flattens).
    for i in 0..100 {
        cycle(&mut rig, i);
    }
    let settled = |rig: &Rig| (rig.h.fds(), rig.h.threads());
    let (fds0, threads0) = settled(&rig);
    let rss0 = rig.h.rss_kib();
    let t = Instant::now();
    for i in 0..cycles {
        cycle(&mut rig, i);
    }
    let took = t.elapsed();
    // Threads and sockets wind down asynchronously after the last removal: wait
    // (bounded) for the counts to come back rather than sleeping a fixed time.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (fds1, threads1) = loop {
        let now = settled(&rig);
        if (now.0 <= fds0 && now.1 <= threads0) || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rss1 = rig.h.rss_kib();
    let grew = rss1 as i64 - rss0 as i64;
    eprintln!(
        "FIGURE {cycles} add/remove cycles in {:.1} s: RSS {rss0} -> {rss1} KiB ({grew:+} KiB), fds {fds0} -> {fds1}, threads {threads0} -> {threads1}",
        took.as_secs_f64()
    );
    assert!(fds1 <= fds0, "fds {fds0} -> {fds1} after {cycles} cycles");
    assert!(
        threads1 <= threads0,
        "threads {threads0} -> {threads1} after {cycles} cycles"
    );
    // After the warm-up RSS grows about 0.5 KiB a cycle on a quiet machine
    // (+456 KiB over 900 cycles), more on a loaded one (+1120 KiB over 300
    // beside a CPU hog, a cross build and QEMU guests: allocator arenas, not
    // per-cycle growth, as the quiet 900 show). The bound, 2 MiB per 300
    // cycles, catches a leak of 7 KiB a cycle (scripts/mutants.sh: 16 KiB).
    let bound_kib = 2048 * i64::from(cycles) / 300;
    assert!(
        grew < bound_kib,
        "RSS grew {grew} KiB over {cycles} cycles (bound {bound_kib} KiB)"
    );
}

/// Benchmark, run by `make bench` (`--ignored`): time from a card's add event to
/// its stream answering PLAY, and 1,000 add/remove cycles with RSS and fd count
/// before and after. Prints numbers; asserts only that every cycle worked.
#[test]
#[ignore = "benchmark: run with `make bench`"]
fn bench_device_add_to_play_and_cycles() {
    let mut rig = Rig::start();
    let name = "usb-pnp-sound-device";
    let url = rig.h.url(name);
    let cycle = |rig: &mut Rig, i: u32, measure: bool| -> Option<Duration> {
        let mark = rig.h.mark();
        let t = Instant::now();
        rig.plug(1, "1-1.4", Some(b"SN-0001"));
        let mut took = None;
        if measure {
            loop {
                let ok = common::rtsp_client::Client::connect(&url, Duration::from_secs(2))
                    .and_then(|mut c| c.play().map(|_| ()));
                if ok.is_ok() {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "cycle {i}: no PLAY: {ok:?}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            took = Some(t.elapsed());
        } else {
            rig.h.wait_log_after(mark, Duration::from_secs(5), |v| {
                is_event(v, "capture started", name)
            });
        }
        rig.unplug(1);
        rig.h.wait_log_after(mark, Duration::from_secs(5), |v| {
            is_event(v, "stream removed", name)
        });
        took
    };
    let mut to_play: Vec<Duration> = (0..20).filter_map(|i| cycle(&mut rig, i, true)).collect();
    to_play.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "BENCH add event to PLAY: median {:.1} ms, p90 {:.1} ms, max {:.1} ms (20 runs)",
        ms(to_play[10]),
        ms(to_play[18]),
        ms(to_play[19])
    );
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, fds0, threads0) = (rig.h.rss_kib(), rig.h.fds(), rig.h.threads());
    let t = Instant::now();
    for i in 0..1000 {
        cycle(&mut rig, i, false);
    }
    let took = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, fds1, threads1) = (rig.h.rss_kib(), rig.h.fds(), rig.h.threads());
    println!(
        "BENCH 1000 add/remove cycles in {:.1} s: RSS {rss0} -> {rss1} KiB ({:+} KiB), fds {fds0} -> {fds1}, threads {threads0} -> {threads1}",
        took.as_secs_f64(),
        rss1 as i64 - rss0 as i64
    );
}
