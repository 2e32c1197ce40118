//! systemd integration against the real binary: sd_notify messages read from a
//! unix datagram socket the test owns (as systemd would), the watchdog fed
//! while the agent answers and stopped when a part of it is wedged on purpose,
//! and the shipped units checked with `systemd-analyze`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{Harkd, msg};

const TONE: &str = r#"
[rtsp]
bind = "127.0.0.1"
port = @PORT@

[devices]
enabled = false

[[stream]]
name = "tone"
source = "tone"
"#;

/// Every datagram received, timestamped.
type Received = Arc<(Mutex<Vec<(Instant, String)>>, Condvar)>;

/// The service manager's end of `NOTIFY_SOCKET`.
struct NotifySocket {
    path: PathBuf,
    _dir: tempfile::TempDir,
    got: Received,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let got: Received = Arc::default();
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (m, cv) = &*g;
                m.lock().unwrap().push((Instant::now(), text));
                cv.notify_all();
            }
        });
        NotifySocket {
            path,
            _dir: dir,
            got,
        }
    }

    fn env(&self) -> String {
        self.path.display().to_string()
    }

    /// Waits for a message that has `line` as one of its lines; returns it whole.
    fn wait_for(&self, timeout: Duration, line: &str) -> String {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.got;
        let mut g = m.lock().unwrap();
        loop {
            if let Some((_, t)) = g.iter().find(|(_, t)| t.lines().any(|l| l == line)) {
                return t.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {line:?} within {timeout:?}; got {:?}",
                self.texts_locked(&g)
            );
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    fn texts_locked(&self, g: &[(Instant, String)]) -> Vec<String> {
        g.iter().map(|(_, t)| t.clone()).collect()
    }

    /// Times at which a message with `line` arrived after `since`.
    fn times(&self, line: &str, since: Instant) -> Vec<Instant> {
        self.got
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, m)| *t >= since && m.lines().any(|l| l == line))
            .map(|(t, _)| *t)
            .collect()
    }

    fn texts(&self) -> Vec<String> {
        self.texts_locked(&self.got.0.lock().unwrap())
    }
}

/// Starts harkd under a fake service manager with a watchdog of `watchdog`.
fn start(ns: &NotifySocket, watchdog: Duration) -> Harkd {
    let usec = watchdog.as_micros().to_string();
    Harkd::start_with_args(
        TONE,
        &[("NOTIFY_SOCKET", &ns.env()), ("WATCHDOG_USEC", &usec)],
        &[("--test-hooks", "")],
    )
}

/// Feeds at about twice the interval, then wedges one part with `signal` and
/// checks that the feeding stops within one interval and the log says which
/// part did not answer.
fn watchdog_stops_when_wedged(signal: &str, part: &str) {
    let ns = NotifySocket::new();
    let interval = Duration::from_secs(1);
    let h = start(&ns, interval);
    let ready = ns.wait_for(Duration::from_secs(10), "READY=1");
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");
    ns.wait_for(Duration::from_secs(10), "STATUS=1 stream running");

    let from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let fed = ns.times("WATCHDOG=1", from).len();
    // Every half interval: 6 in 3 s (one either way for the edges).
    assert!(
        (5..=7).contains(&fed),
        "{fed} WATCHDOG=1 in 3 s with a 1 s interval"
    );

    let wedged_at = Instant::now();
    h.signal(signal);
    std::thread::sleep(Duration::from_secs(3));
    let after = ns.times("WATCHDOG=1", wedged_at);
    // At most one round was already under way when the signal landed.
    assert!(after.len() <= 1, "still fed after the wedge: {after:?}");
    if let Some(last) = after.last() {
        assert!(
            *last - wedged_at < interval,
            "fed {:?} after the wedge",
            *last - wedged_at
        );
    }
    let line = h.wait_log(Duration::from_secs(3), |v| {
        msg(v).contains("not feeding the watchdog")
    });
    assert_eq!(
        line.get(part),
        Some(&serde_json::Value::Bool(false)),
        "{line}"
    );
    let other = if part == "media_thread" {
        "supervisor"
    } else {
        "media_thread"
    };
    assert_eq!(
        line.get(other),
        Some(&serde_json::Value::Bool(true)),
        "{line}"
    );
}

#[test]
fn ready_status_and_watchdog_until_the_gstreamer_thread_is_wedged() {
    watchdog_stops_when_wedged("USR1", "media_thread");
}

#[test]
fn watchdog_stops_when_the_supervisor_loop_is_wedged() {
    // The async runtime keeps running (a timer-driven heartbeat would still
    // fire); only the supervisor loop stops answering.
    watchdog_stops_when_wedged("USR2", "supervisor");
}

#[test]
fn reload_and_stop_are_announced() {
    let ns = NotifySocket::new();
    // A watchdog meant for another process (WATCHDOG_PID) is not fed.
    let h = Harkd::start_with_args(
        TONE,
        &[
            ("NOTIFY_SOCKET", &ns.env()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
        &[],
    );
    ns.wait_for(Duration::from_secs(10), "READY=1");
    let before_reload = Instant::now();
    h.reload(&TONE.replace("\"tone\"\nsource", "\"tone2\"\nsource"));
    ns.wait_for(Duration::from_secs(10), "RELOADING=1");
    let reloading = ns
        .texts()
        .into_iter()
        .find(|t| t.lines().any(|l| l == "RELOADING=1"))
        .unwrap();
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    // READY=1 again after the reload.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.times("READY=1", before_reload).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no READY=1 after the reload: {:?}",
            ns.texts()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = h.stop();
    assert!(status.success(), "{status:?}");
    ns.wait_for(Duration::from_secs(2), "STOPPING=1");
    assert!(
        ns.times("WATCHDOG=1", before_reload - Duration::from_secs(60))
            .is_empty(),
        "fed a watchdog that belongs to another process"
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The units with ExecStart pointing at the binary just built, so that
/// `systemd-analyze verify` has nothing to complain about but real errors.
fn units_for_verify(dir: &Path) -> Vec<PathBuf> {
    ["harkd.service", "harkd-deadman.service"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(repo().join("configs/systemd").join(name)).unwrap();
            assert!(text.contains("/usr/bin/harkd "), "{name}: ExecStart moved?");
            let p = dir.join(name);
            std::fs::write(
                &p,
                text.replace("/usr/bin/harkd ", &format!("{} ", common::HARKD)),
            )
            .unwrap();
            p
        })
        .collect()
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_verify(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Every line would be a complaint about our units (unknown keys, keys in
    // the wrong section, bad values); lines about other units are not ours.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("harkd")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {ours:#?}");

    // A key in the wrong section is what verify catches: prove it would.
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        format!(
            "[Service]\nExecStart={} --version\nStartLimitBurst=5\nNoSuchKey=1\n",
            common::HARKD
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("NoSuchKey"),
        "verify did not flag an unknown key: {text}"
    );
}

#[test]
fn harkd_unit_is_notify_with_limits_in_the_unit_section_and_hardened() {
    let text = std::fs::read_to_string(repo().join("configs/systemd/harkd.service")).unwrap();
    let mut section = "";
    let mut keys: Vec<(String, String, String)> = vec![];
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        keys.push((section.to_string(), k.to_string(), v.to_string()));
    }
    let get = |s: &str, k: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(sec, key, _)| sec == s && key == k)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    // Start limits are ignored in [Service]: they must be in [Unit].
    assert_eq!(get("[Unit]", "StartLimitIntervalSec"), ["10min"]);
    assert_eq!(get("[Unit]", "StartLimitBurst"), ["5"]);
    assert!(get("[Service]", "StartLimitBurst").is_empty());
    assert_eq!(get("[Unit]", "OnFailure"), ["harkd-deadman.service"]);
    assert_eq!(get("[Service]", "Type"), ["notify"]);
    assert_eq!(get("[Service]", "WatchdogSec"), ["30s"]);
    assert_eq!(get("[Service]", "Restart"), ["on-failure"]);
    // Exit 3 (config) and 4 (deadman) go to the deadman, not to a restart loop.
    assert_eq!(get("[Service]", "RestartPreventExitStatus"), ["3 4"]);
    assert_eq!(get("[Service]", "User"), ["hark"]);
    assert_eq!(get("[Service]", "SupplementaryGroups"), ["audio"]);
    assert_eq!(get("[Service]", "CapabilityBoundingSet"), [""]);
    assert_eq!(get("[Service]", "NoNewPrivileges"), ["yes"]);
    assert_eq!(get("[Service]", "ProtectSystem"), ["strict"]);
}

/// The exposure score `systemd-analyze security` gives a unit file.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score: {text}{}", String::from_utf8_lossy(&out.stderr)));
    let score = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    println!("{}: exposure {score}", unit.display());
    score
}

#[test]
fn units_score_under_two_in_systemd_analyze_security() {
    let dir = tempfile::tempdir().unwrap();
    for unit in units_for_verify(dir.path()) {
        let score = exposure(&unit);
        assert!(score < 2.0, "{}: exposure {score}", unit.display());
    }
    // The score reacts to hardening: the same unit without it scores far worse.
    let bare = dir.path().join("bare.service");
    std::fs::write(
        &bare,
        format!("[Service]\nExecStart={} --version\n", common::HARKD),
    )
    .unwrap();
    assert!(exposure(&bare) > 8.0);
}
