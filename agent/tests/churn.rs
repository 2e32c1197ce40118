//! Session churn, the BirdNET-Pi pattern and worse: new RTSP sessions again and
//! again on one running stream, mixed as clients really come and go: over TCP
//! and over UDP, ended by TEARDOWN or vanishing mid-PLAY (socket closed, no
//! TEARDOWN), and bare DESCRIBE probes, while another stream is listened to
//! without a break and the status endpoint is polled. Every session must
//! succeed (no 503), one capture pipeline serves them all, and the agent must
//! come back to its size: RSS after warm-up, file descriptors and threads.
//!
//! `CHURN_SESSIONS` sets how many (1,000 in `make test` and CI; `make churn`
//! runs 10,000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::rtsp_client::{Client, Transport, describe_probe};
use common::{Harkd, is_event, msg};

/// Packets a session reads before its TEARDOWN (60 ms Opus frames, frame_ms's
/// default), and before a vanishing client drops its sockets.
const PACKETS: usize = 2;
const PACKETS_BEFORE_VANISHING: usize = 1;
/// How long a session may take for its requests and packets: many times their
/// real time, so a loaded machine passes and a stream that stops does not.
const WITHIN: Duration = Duration::from_secs(5);
/// Sessions whose client vanished over UDP are ended by the server's session
/// timeout (60 s, gst-rtsp-server's) once the pool is cleaned (every 2 s).
const LINGER: Duration = Duration::from_secs(90);
/// How long GLib keeps an idle pool thread (15 s), and a margin.
const IDLE_THREADS_END: Duration = Duration::from_secs(20);
/// RSS may grow this much between the end of the warm-up and the end.
const RSS_BOUND_KIB: u64 = 1024;

#[derive(Debug, Clone, Copy)]
enum Kind {
    TcpTeardown,
    UdpTeardown,
    TcpVanish,
    UdpVanish,
    Describe,
}

const MIX: [Kind; 5] = [
    Kind::TcpTeardown,
    Kind::UdpTeardown,
    Kind::TcpVanish,
    Kind::UdpVanish,
    Kind::Describe,
];

fn sessions() -> usize {
    std::env::var("CHURN_SESSIONS")
        .ok()
        .map(|v| v.parse().expect("CHURN_SESSIONS is a number"))
        .unwrap_or(1000)
}

/// One session of `kind`; the connect-to-first-packet time for those that play.
fn session(url: &str, kind: Kind) -> Result<Option<Duration>, String> {
    let (transport, packets, teardown) = match kind {
        Kind::Describe => {
            return match describe_probe(url)? {
                200 => Ok(None),
                other => Err(format!("DESCRIBE answered {other}")),
            };
        }
        Kind::TcpTeardown => (Transport::Tcp, PACKETS, true),
        Kind::UdpTeardown => (Transport::Udp, PACKETS, true),
        Kind::TcpVanish => (Transport::Tcp, PACKETS_BEFORE_VANISHING, false),
        Kind::UdpVanish => (Transport::Udp, PACKETS_BEFORE_VANISHING, false),
    };
    let t0 = Instant::now();
    let mut c = Client::connect(url, WITHIN)?;
    c.play_over(transport)?;
    let mut first = None;
    for n in 0..packets {
        c.read_rtp()
            .map_err(|e| format!("after {n} of {packets} RTP packets: {e}"))?;
        first.get_or_insert_with(|| t0.elapsed());
        if t0.elapsed() > WITHIN {
            return Err(format!("{n} of {packets} RTP packets in {WITHIN:?}"));
        }
    }
    if teardown {
        match c.teardown()? {
            200 => {}
            other => return Err(format!("TEARDOWN answered {other}")),
        }
    }
    // A vanishing client just drops its sockets here.
    Ok(first)
}

/// Runs `n` sessions cycling through the mix; failures are collected.
fn run(url: &str, n: usize, h: &Harkd, failures: &mut Vec<String>, firsts: &mut Vec<Duration>) {
    for i in 0..n {
        let kind = MIX[i % MIX.len()];
        match session(url, kind) {
            Ok(Some(first)) => firsts.push(first),
            Ok(None) => {}
            Err(e) => failures.push(format!("session {i} ({kind:?}): {e}")),
        }
        if i % 25 == 0 {
            let status = common::http_get(h.http_port, "/api/v1/status");
            if !status.contains("\"birds\"") {
                failures.push(format!("status after session {i}: {status}"));
            }
        }
    }
}

/// Waits until the stream's last "clients changed" says 0.
fn wait_no_clients(h: &Harkd, timeout: Duration) {
    common::wait_for(timeout, "no clients left on /birds", || {
        let changes = h.logs_after(0, |v| msg(v) == "clients changed" && v["stream"] == "birds");
        match changes.last() {
            Some(c) if c["clients"] == 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// A listener on the other stream for the whole run: (packets, longest gap).
fn listen(
    url: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(usize, Duration), String>> {
    std::thread::spawn(move || {
        let mut c = Client::connect(&url, WITHIN)?;
        c.play()?;
        c.read_rtp()?;
        let (mut n, mut gap, mut last) = (1, Duration::ZERO, Instant::now());
        while !stop.load(Ordering::Relaxed) {
            c.read_rtp()?;
            gap = gap.max(last.elapsed());
            last = Instant::now();
            n += 1;
        }
        c.teardown()?;
        Ok((n, gap))
    })
}

#[test]
fn mixed_sessions_all_succeed_and_leave_nothing_behind() {
    let h = Harkd::start(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
         [[stream]]\nname = \"birds\"\nsource = \"tone\"\n\n\
         [[stream]]\nname = \"other\"\nsource = \"tone\"\ntone_hz = 880.0\n",
    );
    for s in ["birds", "other"] {
        h.wait_log(Duration::from_secs(10), |v| {
            is_event(v, "audio is flowing", s)
        });
    }
    let url = h.url("birds");
    let total = sessions();
    let (mut failures, mut firsts) = (vec![], vec![]);

    // Warm-up: every kind of session, until what they leave behind is gone
    // (first-use allocations stay: they are the baseline).
    run(&url, 10 * MIX.len(), &h, &mut failures, &mut firsts);
    // GLib's thread pools keep idle threads for 15 s: a baseline taken before
    // they end would hide a leak of their number.
    wait_no_clients(&h, LINGER);
    let (fds_before, threads_before) = h.steady_counts(IDLE_THREADS_END, LINGER);
    let rss_before = h.rss_kib();
    // The other stream is listened to from here to the end of the sessions.
    let stop = Arc::new(AtomicBool::new(false));
    let listener = listen(h.url("other"), stop.clone());
    let listened_from = Instant::now();

    let t = Instant::now();
    run(&url, total, &h, &mut failures, &mut firsts);
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let listened_for = listened_from.elapsed();
    let (heard, gap) = listener
        .join()
        .unwrap()
        .expect("the other stream's listener");

    assert!(
        failures.is_empty(),
        "{} failures: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    firsts.sort();
    eprintln!(
        "FIGURE churn: {total} sessions in {took:.0?}; first packet median {:?}, slowest {:?}",
        firsts[firsts.len() / 2],
        firsts[firsts.len() - 1]
    );
    // Sessions join the running capture; they never start one of their own.
    assert_eq!(
        h.logs_after(0, |v| is_event(v, "capture started", "birds"))
            .len(),
        1,
        "{}",
        h.raw_log()
    );
    assert_eq!(common::restarts(&h, "birds"), Some(0));
    // The other stream's listener heard it all along.
    // 60 ms packets: frame_ms's default.
    let expected = listened_for.as_secs_f64() / 0.060;
    eprintln!(
        "FIGURE churn: /other's listener: {heard} packets of about {expected:.0}, longest gap {gap:?}"
    );
    assert!(
        heard as f64 > 0.9 * expected,
        "/other: {heard} of {expected:.0} packets"
    );
    assert!(gap < Duration::from_millis(500), "/other: a {gap:?} gap");

    // Every session is gone (those of vanished UDP clients at the session
    // timeout), and with them their descriptors and threads.
    wait_no_clients(&h, LINGER);
    let t = Instant::now();
    let (fds_after, threads_after) = common::wait_for(
        LINGER,
        &format!("fds back to {fds_before} and threads to {threads_before} (leaked?)"),
        || {
            let now = h.steady_counts(Duration::from_secs(2), Duration::from_secs(10));
            if now.0 <= fds_before && now.1 <= threads_before {
                Ok(now)
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .0;
    let rss_after = h.rss_kib();
    eprintln!(
        "FIGURE churn: rss {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after}, \
         threads {threads_before} -> {threads_after} (back within {:.0?})",
        t.elapsed()
    );
    assert!(
        rss_after < rss_before + RSS_BOUND_KIB,
        "RSS grew from {rss_before} to {rss_after} KiB over {total} sessions"
    );
}
