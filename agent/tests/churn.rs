//! Session churn, the BirdNET-Pi pattern: a new RTSP session again and again on a
//! running stream, with bare DESCRIBE-then-disconnect probes in between. Every one
//! must succeed (no 503), and the agent must not grow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::rtsp_client::{describe_probe, session};
use common::{Harkd, is_event};

#[test]
fn three_hundred_sessions_and_probes_all_succeed() {
    let h = Harkd::start(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[[stream]]\nname = \"birds\"\nsource = \"tone\"\n",
    );
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "birds")
    });
    let url = h.url("birds");
    // Warm up (first-use allocations), then measure.
    session(&url, Duration::from_millis(500)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = h.rss_kib();
    let fds_before = h.fds();
    let mut failures = vec![];
    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        match session(&url, Duration::from_millis(500)) {
            Ok((packets, first)) => {
                // 20 ms Opus frames: about 25 in half a second.
                if packets < 15 {
                    failures.push(format!("session {i}: only {packets} RTP packets"));
                }
                slowest = slowest.max(first);
            }
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
    // Clients are gone: wait for their media to be released.
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = h.rss_kib();
    let fds_after = h.fds();
    eprintln!(
        "churn: rss {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after}, slowest first packet {slowest:?}"
    );
    assert_eq!(fds_after, fds_before, "file descriptors leaked");
    assert!(
        rss_after < rss_before + 4096,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest session took {slowest:?} to its first packet"
    );
}
