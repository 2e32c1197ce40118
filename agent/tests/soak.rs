//! The fault soak: months of an appliance's life pressed into minutes. Sixteen
//! streams (twelve test tones, four userspace ALSA microphones the test feeds)
//! and a hot-pluggable microphone; BirdNET-style clients reconnecting every
//! 0.5-2 s (TCP and UDP, some vanishing mid-PLAY); the status endpoint and the
//! D-Bus properties polled; and, one after another at random moments, faults:
//! a source stalls, the microphone is unplugged and plugged back, a pipeline
//! fails (its device made unopenable by a reload, then restored), the config
//! is reloaded with and without changes, a SIGHUP flood, the state directory
//! goes read-only and comes back, the disk fills and is emptied.
//!
//! Asserted, and printed as a summary: the agent never exits; every faulted
//! stream is back within its bound once the fault ends; no session on a stream
//! that was not being faulted fails; two untouched streams' listeners miss no
//! RTP packet and never wait 200 ms for one; the names file is intact and
//! holds the microphone's name; RSS grows less than 2 MiB after the warm-up;
//! descriptors and threads come back to their count.
//!
//! Run by `make soak` (`SOAK_SECONDS`, default there 1,200; CI runs 180, the
//! test's own default); `cargo test` leaves it out (ignored) for its length. `SOAK_SEED`
//! repeats a run's choices (the seed is printed). The read-only and full-disk
//! faults need a tmpfs for the state directory, so root; without it they are
//! left out and the summary says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rtsp_client::{Client, Transport};
use common::{FifoMic, Harkd, fixture, is_event};

/// A faulted stream must be running again this long after its fault ended:
/// the stall timeout (3 s) plus the longest backoff configured (8 s) and room.
const BACK_WITHIN: Duration = Duration::from_secs(20);
/// Longest wait for a packet on an untouched stream.
const MAX_GAP: Duration = Duration::from_millis(200);
const RSS_BOUND_KIB: u64 = 2048;
const CLIENTS: usize = 6;
const TONES: usize = 12;
const FIFOS: usize = 4;

/// xorshift64*: the run's choices, repeatable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
        .unwrap_or(default)
}

/// A tmpfs of 1 MiB at `dir` (root only); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "hark-soak"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

fn remount(dir: &Path, mode: &str) {
    let ok = Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "remount {mode} {}", dir.display());
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What the faults are doing, for the clients to know which failures are due.
#[derive(Default)]
struct Faults {
    /// Streams being faulted now, and when each last stopped being faulted.
    now: BTreeSet<String>,
    ended: BTreeMap<String, Instant>,
}

impl Faults {
    /// Whether a session on `stream` that began at `since` may fail.
    fn excuses(&self, stream: &str, since: Instant) -> bool {
        self.now.contains(stream) || self.ended.get(stream).is_some_and(|t| *t >= since)
    }
}

struct Soak {
    h: Harkd,
    tree: tempfile::TempDir,
    events: std::fs::File,
    config: String,
    mics: Vec<FifoMic>,
    /// The hot-pluggable microphone's source (kept alive: its writer feeds it).
    _device_mic: FifoMic,
    device_name: String,
    state: PathBuf,
    /// The gain of the last tone stream now (the reload fault changes it; other
    /// reloads keep it, or they would restart that stream unannounced).
    gain: f64,
    tmpfs: Option<Tmpfs>,
    faults: Arc<Mutex<Faults>>,
}

fn config(state: &Path, device_mic: &str, broken: Option<usize>, gain: f64) -> String {
    let mut c = format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[restart]\ninitial_ms = 500\nmax_ms = 8000\n\n\
         [devices]\nstate_dir = \"{}\"\nalsa_device = \"{device_mic}\"\n",
        state.display()
    );
    for i in 1..=TONES {
        let g = if i == TONES { gain } else { 0.0 };
        c.push_str(&format!(
            "\n[[stream]]\nname = \"tone-{i:02}\"\nsource = \"tone\"\ntone_hz = {}.0\ngain_db = {g}\n",
            200 + 100 * i
        ));
    }
    for i in 1..=FIFOS {
        let device = if broken == Some(i) {
            "hw:CARD=NoSuchCard,DEV=0".to_string()
        } else {
            format!("fifo{i}")
        };
        c.push_str(&format!(
            "\n[[stream]]\nname = \"fifo-{i}\"\nsource = \"alsa\"\ndevice = \"{device}\"\n"
        ));
    }
    c
}

impl Soak {
    fn start(bus: &common::bus::Bus) -> Soak {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("sys/class/sound")).unwrap();
        std::fs::create_dir_all(tree.path().join("proc/asound")).unwrap();
        let fifo = tree.path().join("uevents");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let state = tree.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let tmpfs = if common::is_root() {
            Tmpfs::mount(&state)
        } else {
            None
        };
        let mics: Vec<FifoMic> = (1..=FIFOS)
            .map(|i| FifoMic::named(&format!("fifo{i}"), 500.0 + 50.0 * i as f64, 0.25))
            .collect();
        let device_mic = FifoMic::named("devmic", 700.0, 0.25);
        let alsa_path = std::iter::once(&device_mic)
            .chain(&mics)
            .map(|m| m.alsa_config_path.split_once(':').unwrap().1.to_string())
            .fold("/usr/share/alsa/alsa.conf".to_string(), |acc, c| {
                acc + ":" + &c
            });
        let config = config(&state, &device_mic.device, None, 0.0);
        let sys = tree.path().join("sys");
        let proc = tree.path().join("proc");
        let fifo_s = fifo.display().to_string();
        let h = Harkd::start_with_args(
            &config,
            &[
                ("ALSA_CONFIG_PATH", alsa_path.as_str()),
                ("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str()),
            ],
            &[
                ("--sysfs-root", sys.to_str().unwrap()),
                ("--procfs-root", proc.to_str().unwrap()),
                ("--uevents", fifo_s.as_str()),
                ("--bus", "session"),
            ],
        );
        let events = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let mut s = Soak {
            h,
            tree,
            events,
            config,
            mics,
            _device_mic: device_mic,
            device_name: String::new(),
            state,
            gain: 0.0,
            tmpfs,
            faults: Arc::default(),
        };
        s.plug();
        s.device_name =
            common::wait_for(Duration::from_secs(20), "the microphone's stream", || {
                s.device_streams()
                    .into_iter()
                    .next()
                    .ok_or_else(String::new)
            })
            .0;
        s
    }

    fn plug(&mut self) {
        fixture::usb_card(
            self.tree.path(),
            &fixture::UsbCard {
                index: 1,
                card_id: "Device",
                port: "1-1.4",
                vendor: "0d8c",
                product_id: "013c",
                serial: Some(b"SOAK-0001"),
                manufacturer: Some(b"C-Media Electronics Inc."),
                product: Some(b"USB PnP Sound Device"),
                stream0: Some(fixture::CM108_STREAM0),
                capture: true,
            },
        );
        writeln!(self.events, "add 1").unwrap();
        self.events.flush().unwrap();
    }

    fn unplug(&mut self) {
        fixture::remove_card(self.tree.path(), 1);
        writeln!(self.events, "remove 1").unwrap();
        self.events.flush().unwrap();
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&common::http_get(self.h.http_port, "/api/v1/status")).unwrap()
    }

    fn device_streams(&self) -> Vec<String> {
        self.status()["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["card"].is_null())
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn state_of(&self, stream: &str) -> String {
        self.status()["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == stream)
            .map_or_else(
                || "absent".into(),
                |s| s["state"].as_str().unwrap().to_string(),
            )
    }

    /// Waits for `stream` to be running; how long it took.
    fn wait_running(&self, stream: &str, what: &str) -> Duration {
        common::wait_for(
            BACK_WITHIN,
            &format!("/{stream} running again after {what}"),
            || match self.state_of(stream).as_str() {
                "running" => Ok(()),
                other => Err(other.to_string()),
            },
        )
        .1
    }

    fn reload(&mut self, config: String) {
        self.config = config;
        self.h.reload(&self.config);
    }

    /// Waits for the agent to log `message` for `stream` after log line `from`:
    /// proof that a fault did what it is meant to.
    fn saw(&self, from: usize, message: &str, stream: &str) {
        self.h.wait_log_after(from, Duration::from_secs(15), |v| {
            is_event(v, message, stream)
        });
    }

    /// No stream's capture was started after log line `from`.
    fn none_restarted(&self, from: usize, what: &str) {
        let started = self
            .h
            .logs_after(from, |v| common::msg(v) == "capture started");
        assert!(started.is_empty(), "{what} restarted captures: {started:?}");
    }

    fn fault_begin(&self, streams: &[&str]) {
        let mut f = self.faults.lock().unwrap();
        f.now.extend(streams.iter().map(|s| s.to_string()));
    }

    fn fault_end(&self, streams: &[&str]) {
        let mut f = self.faults.lock().unwrap();
        for s in streams {
            f.now.remove(*s);
            f.ended.insert(s.to_string(), Instant::now());
        }
    }
}

/// One fault, start to finish; returns how long the faulted stream took to be
/// running again after the fault ended (None when no stream was faulted).
fn fault(s: &mut Soak, kind: usize, rng: &mut Rng, log: &mut Vec<String>) -> Option<Duration> {
    let state_path = s.state.clone();
    match kind {
        0 => {
            let i = rng.below(FIFOS as u64) as usize;
            let name = format!("fifo-{}", i + 1);
            s.fault_begin(&[&name]);
            let from = s.h.mark();
            s.mics[i].pause_writing();
            s.saw(from, "capture stalled", &name);
            std::thread::sleep(rng.millis(1000, 3000));
            s.mics[i].resume_writing();
            recovered(s, &name, "a stall", format!("stall /{name}"), log)
        }
        1 => {
            let name = s.device_name.clone();
            s.fault_begin(&[&name]);
            s.unplug();
            common::wait_until(
                Duration::from_secs(10),
                "the unplugged mic's stream gone",
                || s.state_of(&name) == "absent",
            );
            std::thread::sleep(rng.millis(500, 1500));
            s.plug();
            recovered(
                s,
                &name,
                "unplug and replug",
                format!("unplug and replug /{name}"),
                log,
            )
        }
        2 => {
            let i = 1 + rng.below(FIFOS as u64) as usize;
            let name = format!("fifo-{i}");
            s.fault_begin(&[&name]);
            let from = s.h.mark();
            s.reload(config(&state_path, "devmic", Some(i), s.gain));
            s.saw(from, "capture failed", &name);
            std::thread::sleep(rng.millis(1000, 3000));
            s.reload(config(&state_path, "devmic", None, s.gain));
            recovered(
                s,
                &name,
                "a failing device",
                format!("pipeline failing (unopenable device) /{name}"),
                log,
            )
        }
        3 => {
            let (c, from) = (s.config.clone(), s.h.mark());
            s.reload(c);
            std::thread::sleep(Duration::from_millis(1000));
            s.none_restarted(from, "a reload without changes");
            log.push("reload without changes: nothing restarted".into());
            None
        }
        4 => {
            let name = format!("tone-{TONES:02}");
            s.fault_begin(&[&name]);
            // Another gain than the one it has now.
            let gain = if s.gain < 0.0 { 3.0 } else { -3.0 };
            s.gain = gain;
            let from = s.h.mark();
            s.reload(config(&state_path, "devmic", None, gain));
            s.saw(from, "capture started", &name);
            recovered(
                s,
                &name,
                "a reload changing it",
                format!("reload changing /{name} (gain {gain} dB)"),
                log,
            )
        }
        5 => {
            let from = s.h.mark();
            for _ in 0..50 {
                s.h.signal("HUP");
            }
            std::thread::sleep(Duration::from_millis(1000));
            s.none_restarted(from, "50 SIGHUPs");
            log.push("50 SIGHUPs: nothing restarted".into());
            None
        }
        6 | 7 => {
            let tmpfs = s.tmpfs.as_ref().map(|t| t.0.clone())?;
            let filler = state_path.join("filler");
            if kind == 6 {
                remount(&tmpfs, "ro");
            } else {
                // Fill it: writes fail with ENOSPC from here on.
                let mut f = std::fs::File::create(&filler).unwrap();
                let chunk = vec![0u8; 64 * 1024];
                while f.write_all(&chunk).is_ok() {}
            }
            // A device event makes the agent write its names file.
            let name = s.device_name.clone();
            s.fault_begin(&[&name]);
            let from = s.h.mark();
            s.unplug();
            common::wait_until(
                Duration::from_secs(10),
                "the unplugged mic's stream gone",
                || s.state_of(&name) == "absent",
            );
            s.plug();
            let back = s.wait_running(&name, "a replug on a broken state directory");
            // Reported, and the mic got its name all the same.
            s.h.wait_log_after(from, Duration::from_secs(15), |v| {
                common::msg(v) == "name ledger not saved"
            });
            if kind == 6 {
                remount(&tmpfs, "rw");
            } else {
                std::fs::remove_file(&filler).unwrap();
            }
            s.fault_end(&[&name]);
            let what = if kind == 6 { "read-only" } else { "full" };
            log.push(format!(
                "state directory {what}, mic replugged: /{name} back in {back:.1?}"
            ));
            Some(back)
        }
        _ => unreachable!(),
    }
}

/// Waits for the faulted stream to run again, ends its fault and logs it;
/// how long it took.
fn recovered(
    s: &Soak,
    name: &str,
    after: &str,
    label: String,
    log: &mut Vec<String>,
) -> Option<Duration> {
    let back = s.wait_running(name, after);
    s.fault_end(&[name]);
    log.push(format!("{label}: back in {back:.1?}"));
    Some(back)
}

/// A BirdNET-style client: sessions one after another on random streams.
fn client(
    url_base: String,
    streams: Vec<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
    sessions: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut failures = vec![];
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let stream = &streams[rng.below(streams.len() as u64) as usize];
            let transport = if rng.below(2) == 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let vanish = rng.below(4) == 0;
            let play_for = rng.millis(500, 2000);
            let began = Instant::now();
            let result = (|| -> Result<(), String> {
                let mut c =
                    Client::connect(&format!("{url_base}{stream}"), Duration::from_secs(5))?;
                c.play_over(transport)?;
                while began.elapsed() < play_for {
                    c.read_rtp()?;
                }
                if !vanish {
                    match c.teardown()? {
                        200 => {}
                        other => return Err(format!("TEARDOWN answered {other}")),
                    }
                }
                Ok(())
            })();
            sessions.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = result
                && !faults.lock().unwrap().excuses(stream, began)
            {
                failures.push(format!("/{stream} ({transport:?}): {e}"));
            }
        }
        failures
    })
}

/// A listener for the whole soak: (packets, packets missed, longest wait).
fn listener(
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(u64, u64, Duration), String>> {
    std::thread::spawn(move || {
        let mut c = Client::connect(&url, Duration::from_secs(5))?;
        c.play()?;
        let mut seq = c.read_rtp_seq()?;
        let (mut packets, mut missed, mut gap, mut last) =
            (1u64, 0u64, Duration::ZERO, Instant::now());
        while !stop.load(Ordering::Relaxed) {
            let s = c.read_rtp_seq()?;
            gap = gap.max(last.elapsed());
            last = Instant::now();
            missed += u64::from(s.wrapping_sub(seq).wrapping_sub(1));
            seq = s;
            packets += 1;
        }
        Ok((packets, missed, gap))
    })
}

/// HTTP and D-Bus pollers: (polls, failures).
fn pollers(
    http_port: u16,
    bus: String,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut polls, mut failures) = (0, vec![]);
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            for path in ["/api/v1/status", "/metrics", "/healthz"] {
                let (code, _) = common::http_get_full(http_port, path);
                polls += 1;
                // /healthz is 503 while a faulted stream is down: that is its job.
                if code != 200 && !(path == "/healthz" && code == 503) {
                    failures.push(format!("{path}: {code}"));
                }
            }
            let out = Command::new("busctl")
                .args([
                    "--address",
                    &bus,
                    "get-property",
                    "org.hark.Agent1",
                    "/org/hark/Agent1",
                ])
                .args(["org.hark.Agent1", "StreamCount"])
                .output()
                .unwrap();
            polls += 1;
            if !out.status.success() {
                failures.push(format!("busctl: {}", String::from_utf8_lossy(&out.stderr)));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (polls, failures)
    })
}

/// (fds, threads) once unchanged for 20 s (GLib ends idle pool threads after 15 s).
fn quiet_counts(h: &Harkd) -> (usize, usize) {
    h.steady_counts(Duration::from_secs(20), Duration::from_secs(90))
}

#[test]
#[ignore = "minutes long: run by `make soak` (and CI's soak step)"]
fn streams_survive_faults_clients_and_pollers() {
    let seconds = env_u64("SOAK_SECONDS", 180);
    let seed = env_u64("SOAK_SEED", std::process::id() as u64 * 0x9E37_79B9 + 1);
    eprintln!("SOAK: {seconds} s, SOAK_SEED={seed}");
    let mut rng = Rng(seed);
    let bus = common::bus::Bus::open();
    let mut s = Soak::start(&bus);
    let all: Vec<String> = (1..=TONES)
        .map(|i| format!("tone-{i:02}"))
        .chain((1..=FIFOS).map(|i| format!("fifo-{i}")))
        .collect();
    for name in &all {
        s.wait_running(name, "start");
    }
    let untouched = ["tone-01", "tone-02"];
    let clients_on: Vec<String> = all
        .iter()
        .filter(|n| !untouched.contains(&n.as_str()))
        .cloned()
        .chain([s.device_name.clone()])
        .collect();
    let url_base = s.h.url("");
    let (stop, paused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let sessions = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            client(
                url_base.clone(),
                clients_on.clone(),
                seed ^ ((k as u64 + 1) * 0x1234_5678),
                stop.clone(),
                paused.clone(),
                s.faults.clone(),
                sessions.clone(),
            )
        })
        .collect();
    let stop_listening = Arc::new(AtomicBool::new(false));
    let listeners: Vec<_> = untouched
        .iter()
        .map(|n| listener(s.h.url(n), stop_listening.clone()))
        .collect();
    let polling = pollers(
        s.h.http_port,
        bus.address.clone(),
        stop_listening.clone(),
        paused.clone(),
    );

    let started = Instant::now();
    let warm_up = Duration::from_secs((seconds / 5).max(30));
    let end = started + Duration::from_secs(seconds);
    let mut log = vec![];
    let mut backs = vec![];
    let mut baseline = None;
    let kinds = if s.tmpfs.is_some() { 8 } else { 6 };
    let mut done = [0usize; 8];
    // RSS about every 30 s, for the summary.
    let mut rss_seen: Vec<(Instant, u64)> = vec![];
    while Instant::now() < end {
        // The warm-up: a fifth of the run (30 s at least), and every kind of
        // fault once (each has code paths of its own to run a first time).
        if baseline.is_none()
            && started.elapsed() >= warm_up
            && done[..kinds].iter().all(|d| *d > 0)
        {
            // Then clients and pollers rest (the listeners go on), and the
            // agent's size is taken; the end is measured the same way.
            paused.store(true, Ordering::Relaxed);
            let counts = quiet_counts(&s.h);
            baseline = Some((s.h.rss_kib(), counts));
            paused.store(false, Ordering::Relaxed);
        }
        std::thread::sleep(rng.millis(1000, 4000));
        // Every kind once before any twice, then at random.
        let kind = match (0..kinds).find(|k| done[*k] == 0) {
            Some(k) => k,
            None => rng.below(kinds as u64) as usize,
        };
        done[kind] += 1;
        if rss_seen
            .last()
            .is_none_or(|(t, _)| t.elapsed() >= Duration::from_secs(30))
        {
            rss_seen.push((Instant::now(), s.h.rss_kib()));
        }
        if let Some(b) = fault(&mut s, kind, &mut rng, &mut log) {
            backs.push(b);
        }
        assert!(
            s.h.child.try_wait().unwrap().is_none(),
            "harkd exited:\n{}",
            s.h.raw_log()
        );
    }

    // The end: measured as the baseline was, then everything stops.
    paused.store(true, Ordering::Relaxed);
    let (fds_after, threads_after) = quiet_counts(&s.h);
    let rss_after = s.h.rss_kib();
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    stop_listening.store(true, Ordering::Relaxed);
    let heard: Vec<_> = listeners.into_iter().map(|l| l.join().unwrap()).collect();
    let (polls, poll_failures) = polling.join().unwrap();
    let (rss_before, (fds_before, threads_before)) =
        baseline.expect("the soak outlasted its warm-up");
    let (names, problem) = hark_agent::devices::ledger::peek(&s.state.join("names.json"));

    eprintln!("SOAK summary ({seconds} s, seed {seed}):");
    for l in &log {
        eprintln!("  fault: {l}");
    }
    if s.tmpfs.is_none() {
        eprintln!("  (read-only and full state directory left out: they need root for a tmpfs)");
    }
    eprintln!(
        "  {} client sessions, {} failed on streams not being faulted",
        sessions.load(Ordering::Relaxed),
        failures.len()
    );
    for (n, h) in untouched.iter().zip(&heard) {
        eprintln!("  /{n} listener: {h:?} (packets, missed, longest wait)");
    }
    eprintln!(
        "  {polls} HTTP and D-Bus polls, {} failed",
        poll_failures.len()
    );
    eprintln!(
        "  slowest return after a fault: {:.1?}",
        backs.iter().max().copied().unwrap_or_default()
    );
    eprintln!(
        "  rss {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}"
    );
    eprintln!(
        "  names.json: {} entries, problem {problem:?}",
        names.entries.len()
    );
    let trace: Vec<String> = rss_seen
        .iter()
        .map(|(t, kib)| format!("{:.0}s {kib}", (*t - started).as_secs_f64()))
        .collect();
    eprintln!("  RSS (KiB) along the run: {}", trace.join(", "));

    assert!(s.h.child.try_wait().unwrap().is_none(), "harkd exited");
    assert!(
        !s.h.raw_log().contains("panicked"),
        "a panic in the log:\n{}",
        s.h.raw_log()
    );
    assert!(
        failures.is_empty(),
        "{:#?}",
        &failures[..failures.len().min(20)]
    );
    assert!(
        poll_failures.is_empty(),
        "{:#?}",
        &poll_failures[..poll_failures.len().min(20)]
    );
    for (n, h) in untouched.iter().zip(heard) {
        let (packets, missed, gap) = h.unwrap_or_else(|e| panic!("/{n} listener: {e}"));
        assert!(packets > 0 && missed == 0, "/{n}: {missed} packets missed");
        assert!(gap < MAX_GAP, "/{n}: waited {gap:?} for a packet");
    }
    assert!(backs.iter().all(|b| *b < BACK_WITHIN));
    assert!(problem.is_none(), "names.json: {problem:?}");
    assert!(
        names.entries.iter().any(|e| e.name == s.device_name),
        "names.json lost /{}: {names:?}",
        s.device_name
    );
    assert!(
        rss_after < rss_before + RSS_BOUND_KIB,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before && threads_after <= threads_before,
        "fds {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}"
    );
}
