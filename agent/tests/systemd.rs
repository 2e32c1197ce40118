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

    /// How many messages so far have `line` as one of their lines.
    fn count(&self, line: &str) -> usize {
        self.got
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .count()
    }

    /// Waits (at most `timeout`) until `n` messages have `line`; returns how
    /// long it took.
    fn wait_count(&self, line: &str, n: usize, timeout: Duration) -> Duration {
        common::wait_until(timeout, &format!("message {n} with {line:?}"), || {
            self.count(line) >= n
        })
    }

    /// Sends a datagram of our own to the socket and waits until the reader has
    /// it; returns its index among the messages received. Datagrams on a unix
    /// socket queue in order: everything sent to the socket before this call
    /// was received before the marker, and everything after it was sent after
    /// this call began.
    fn marker(&self, name: &str) -> usize {
        let text = format!("HARK_TEST_MARKER={name}");
        UnixDatagram::unbound()
            .unwrap()
            .send_to(text.as_bytes(), &self.path)
            .unwrap();
        common::wait_for(Duration::from_secs(10), &format!("marker {name}"), || {
            let g = self.got.0.lock().unwrap();
            g.iter()
                .position(|(_, t)| *t == text)
                .ok_or_else(|| format!("{} messages", g.len()))
        })
        .0
    }

    /// The messages received between two markers (indices from `marker`).
    fn between(&self, from: usize, to: usize) -> Vec<String> {
        self.got.0.lock().unwrap()[from + 1..to]
            .iter()
            .map(|(_, t)| t.clone())
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

/// Feeds while the agent answers, then wedges one part with `signal` and checks
/// that the agent says which part did not answer and that no `WATCHDOG=1`
/// follows that statement.
fn watchdog_stops_when_wedged(signal: &str, part: &str) {
    let ns = NotifySocket::new();
    let interval = Duration::from_secs(1);
    let h = start(&ns, interval);
    let ready = ns.wait_for(Duration::from_secs(10), "READY=1");
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");
    ns.wait_for(Duration::from_secs(10), "STATUS=1 stream running");

    // Fed while it answers: three more pings, each within 10 intervals of the
    // one before (nominally every half interval). Counting pings in a fixed
    // window would measure the scheduler, not the agent.
    let first = ns.count("WATCHDOG=1");
    let mut gaps = vec![];
    for n in 1..=3 {
        gaps.push(ns.wait_count("WATCHDOG=1", first + n, 10 * interval));
    }
    eprintln!("FIGURE watchdog: three pings after {gaps:?} (nominally every 500 ms)");

    let mark = h.mark();
    let wedged_at = Instant::now();
    h.signal(signal);
    // The agent's own account: the first probe round the part misses. Within
    // 10 intervals (nominally one) or the feeding never stops.
    let line = h.wait_log_after(mark, 10 * interval, |v| {
        msg(v).contains("not feeding the watchdog")
    });
    eprintln!(
        "FIGURE watchdog: 'not feeding' logged {:?} after the wedge signal (nominally under 1 s)",
        wedged_at.elapsed()
    );
    // Given half an interval to answer, as systemd needs a ping per interval.
    assert!(msg(&line).contains("within 500 ms"), "{line}");
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

    // No WATCHDOG=1 after that line. The agent sends a round's ping before it
    // could log a later round's failure, and the log line reached us after it
    // was written: so every ping sent before the line is already queued on the
    // socket, ahead of our first marker. A ping between the markers was sent
    // after the agent said it stopped feeding.
    let from = ns.marker("wedged");
    // The subject: three intervals (six probe rounds) of not feeding.
    std::thread::sleep(3 * interval);
    let to = ns.marker("end");
    let fed: Vec<String> = ns
        .between(from, to)
        .into_iter()
        .filter(|t| t.lines().any(|l| l == "WATCHDOG=1"))
        .collect();
    assert!(
        fed.is_empty(),
        "fed after saying it stopped: {fed:?}; log:\n{}",
        h.raw_log()
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

/// Webhooks that hang or refuse never cost the watchdog a ping: alerts are
/// sent on threads of their own, so the agent's loop keeps answering while a
/// request waits out its timeout (3 s here: an agent that waited on it would
/// miss three pings in a row).
#[test]
fn webhooks_that_hang_or_refuse_never_starve_the_watchdog() {
    // Accepts connections (the kernel does, into its backlog) and never answers.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let refused = common::free_port();
    let ns = NotifySocket::new();
    let cfg = format!(
        "{TONE}\n[[alert]]\nname = \"hang\"\nurl = \"http://127.0.0.1:{hang_port}/\"\ntimeout_s = 3\nretries = 2\n\n\
         [[alert]]\nname = \"refused\"\nurl = \"http://127.0.0.1:{refused}/\"\nretries = 2\n"
    );
    let h = Harkd::start_with_args(
        &cfg,
        &[("NOTIFY_SOCKET", &ns.env()), ("WATCHDOG_USEC", "1000000")],
        &[],
    );
    ns.wait_for(Duration::from_secs(10), "READY=1");
    std::thread::sleep(Duration::from_secs(8));
    // From READY on (the webhooks get their first alert then), READY itself
    // counted as the first sign of life.
    let got = ns.got.0.lock().unwrap().clone();
    let ready = got
        .iter()
        .position(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    let pings: Vec<Instant> = got[ready..]
        .iter()
        .enumerate()
        .filter(|(i, (_, m))| *i == 0 || m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(_, (t, _))| *t)
        .collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    let status: serde_json::Value =
        serde_json::from_str(&common::http_get(h.http_port, "/api/v1/status")).unwrap();
    eprintln!(
        "FIGURE watchdog with stuck webhooks: {} pings in 8 s after READY, longest gap {longest:?} (nominally 500 ms); alerts {}",
        pings.len(),
        status["alerts"]
    );
    // The webhooks were in trouble all along: one timed out, one refused.
    let alerts = status["alerts"].as_array().unwrap();
    assert!(
        alerts[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("timeout"),
        "{status}"
    );
    assert!(alerts[1]["failed"].as_u64().unwrap() >= 1, "{status}");
    assert!(pings.len() >= 9, "{} pings in 8 s", pings.len() - 1);
    // Under the 3 s a blocked agent would leave, with room for a loaded machine.
    assert!(longest < Duration::from_secs(2), "{gaps:?}");
    drop(hang);
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
    common::wait_until(Duration::from_secs(10), "READY=1 after the reload", || {
        ns.count("READY=1") >= 2
    });
    let (status, _) = h.stop();
    assert!(status.success(), "{status:?}");
    // Sent before the exit; the reader thread may be slow to pick it up.
    ns.wait_for(Duration::from_secs(10), "STOPPING=1");
    assert_eq!(
        ns.count("WATCHDOG=1"),
        0,
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
    // The system calls, in order (each line adds to or takes from the last):
    // of @resources, only lowering one's own threads (media/sched.rs) is back.
    assert_eq!(
        get("[Service]", "SystemCallFilter"),
        [
            "@system-service",
            "~@privileged @resources",
            "sched_setscheduler"
        ]
    );
    assert_eq!(get("[Service]", "RestrictRealtime"), ["yes"]);
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
