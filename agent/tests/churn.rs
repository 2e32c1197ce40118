//! Session churn, the BirdNET-Pi pattern: a new RTSP session again and again on a
//! running stream, with bare DESCRIBE-then-disconnect probes in between. Every one
//! must succeed (no 503), one capture pipeline serves them all, and the agent must
//! not grow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::rtsp_client::{describe_probe, session_packets};
use common::{Harkd, is_event, msg};

/// Half a second of 20 ms Opus frames.
const PACKETS: usize = 25;
/// How long a session may take to deliver them: ten times their real-time
/// half second, so a loaded machine passes and a stream that trickles (or a
/// session that stops) does not.
const WITHIN: Duration = Duration::from_secs(5);

/// Waits until the stream's last "clients changed" says 0: the sessions are
/// gone from the agent's point of view.
fn wait_no_clients(h: &Harkd) {
    common::wait_for(Duration::from_secs(30), "no clients left", || {
        let changes = h.logs_after(0, |v| msg(v) == "clients changed" && v["stream"] == "birds");
        match changes.last() {
            Some(c) if c["clients"] == 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// The fd count once it has not changed for 1 s (15 s at most).
fn steady_fds(h: &Harkd) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut last, mut since) = (h.fds(), Instant::now());
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
        let now = h.fds();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

#[test]
fn three_hundred_sessions_and_probes_all_succeed() {
    let h = Harkd::start(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[[stream]]\nname = \"birds\"\nsource = \"tone\"\n",
    );
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "birds")
    });
    let url = h.url("birds");
    // Warm up (first-use allocations), then measure once the session is gone.
    session_packets(&url, PACKETS, WITHIN).unwrap();
    wait_no_clients(&h);
    // The session's socket closes a moment after the agent counts it gone: the
    // baseline is the count once it has held for a second (15 s at most; a
    // baseline taken early would only hide a leak of its own size).
    let fds_before = steady_fds(&h);
    let rss_before = h.rss_kib();
    let mut failures = vec![];
    let mut firsts = vec![];
    for i in 0..300 {
        // Every session gets its half second of packets, within WITHIN.
        match session_packets(&url, PACKETS, WITHIN) {
            Ok(first) => firsts.push(first),
            Err(e) => failures.push(format!("session {i}: {e}")),
        }
        if i % 3 == 0 {
            // Bare probes, as health checkers make them, twice in a row.
            for _ in 0..2 {
                match describe_probe(&url) {
                    Ok(200) => {}
                    other => failures.push(format!("probe after session {i}: {other:?}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    firsts.sort();
    eprintln!(
        "FIGURE churn: first packet median {:?}, slowest {:?}",
        firsts[firsts.len() / 2],
        firsts[firsts.len() - 1]
    );
    // Sessions join the running capture; they never start one of their own (a
    // pipeline per session is what would make first packets slow).
    assert_eq!(
        h.logs_after(0, |v| is_event(v, "capture started", "birds"))
            .len(),
        1,
        "{}",
        h.raw_log()
    );
    assert_eq!(common::restarts(&h, "birds"), Some(0));
    // Clients are gone: their media is released, and the descriptors come back.
    wait_no_clients(&h);
    let ((), took) = common::wait_for(
        Duration::from_secs(30),
        &format!("file descriptors back to {fds_before} (leaked?)"),
        || {
            let now = h.fds();
            if now <= fds_before {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        },
    );
    let rss_after = h.rss_kib();
    let fds_after = h.fds();
    eprintln!(
        "FIGURE churn: rss {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after} (back within {took:?})"
    );
    assert!(
        rss_after < rss_before + 4096,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
