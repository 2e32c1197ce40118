//! Streams come and go at run time (config reload, as the device watcher will do on
//! unplug): a removed stream ends its clients cleanly, and the agent's threads and
//! file descriptors return to where they were. Shutdown is graceful and quick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Harkd, ffmpeg_pull, is_event, msg, wait_timeout};

fn config(with_extra: bool) -> String {
    let mut c = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
        [[stream]]\nname = \"keep\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n"
        .to_string();
    if with_extra {
        c.push_str("\n[[stream]]\nname = \"extra\"\nsource = \"tone\"\ntone_hz = 300.0\ntone_dbfs = -12.0\n");
    }
    c
}

/// Adds "extra", plays it with ffmpeg over `transport`, removes it, and checks that
/// the client ended promptly. Returns how long the client took to end.
fn add_play_remove(h: &Harkd, transport: &str) -> Duration {
    let mark = h.mark();
    h.reload(&config(true));
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "extra")
    });
    let mut client = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-rtsp_transport",
            transport,
            "-i",
            &h.url("extra"),
        ])
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-y", "/dev/null"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it play for a moment.
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        msg(v) == "clients changed" && v["stream"] == "extra" && v["clients"] == 1
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        client.try_wait().unwrap().is_none(),
        "client ended before the stream was removed"
    );
    let mark = h.mark();
    let removed = Instant::now();
    h.reload(&config(false));
    h.wait_log_after(mark, Duration::from_secs(5), |v| {
        is_event(v, "stream removed", "extra")
    });
    let status = wait_timeout(&mut client, Duration::from_secs(5));
    let took = removed.elapsed();
    assert!(
        status.is_some(),
        "ffmpeg ({transport}) still running 5 s after the stream was removed"
    );
    took
}

/// Waits (at most 5 s) until neither count is above `want`; returns the counts.
fn settle(h: &Harkd, want: (usize, usize)) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = (h.threads(), h.fds());
        if (now.0 <= want.0 && now.1 <= want.1) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (threads, fds) once they have not changed for 2 s (at most 15 s): idle
/// threads of the first cycle (GStreamer's task pools) end on their own, and a
/// baseline taken while they linger would hide a leak of the same size.
fn steady(h: &Harkd) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut last, mut since) = ((h.threads(), h.fds()), Instant::now());
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        let now = (h.threads(), h.fds());
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

#[test]
fn removing_a_stream_ends_its_clients_and_releases_everything() {
    let h = Harkd::start(&config(false));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "keep")
    });
    // First cycle warms up lazily created threads (GStreamer's clock, pools).
    add_play_remove(&h, "tcp");
    let baseline = steady(&h);
    for transport in ["tcp", "udp", "tcp", "udp"] {
        let took = add_play_remove(&h, transport);
        assert!(
            took < Duration::from_secs(2),
            "{transport} client took {took:?} to end"
        );
        let now = settle(&h, baseline);
        assert!(
            now.0 <= baseline.0 && now.1 <= baseline.1,
            "(threads, fds) {now:?} after removing a {transport} stream, {baseline:?} before"
        );
    }
    // The untouched stream was never restarted and still plays.
    assert_eq!(common::restarts(&h, "keep"), Some(0));
    assert!(
        h.logs_after(0, |v| is_event(v, "stream removed", "keep"))
            .is_empty()
    );
    ffmpeg_pull(&h.url("keep"), "tcp", 1.0).assert_tone(0.9, 1000.0, -15.0);
}

#[test]
fn a_bad_reload_keeps_the_running_config() {
    let h = Harkd::start(&config(false));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "keep")
    });
    let mark = h.mark();
    std::fs::write(h.config_path(), "[rtsp]\nport = 0\n").unwrap();
    h.signal("HUP");
    let e = h.wait_log_after(mark, Duration::from_secs(5), |v| {
        msg(v).starts_with("reload refused")
    });
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("rtsp.port: port 0 is out of range"),
        "{e}"
    );
    ffmpeg_pull(&h.url("keep"), "tcp", 1.0).assert_tone(0.9, 1000.0, -15.0);
}

#[test]
fn shutdown_with_clients_is_graceful_and_under_two_seconds() {
    let h = Harkd::start(&config(true));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "extra")
    });
    let mut clients: Vec<_> = ["tcp", "udp"]
        .iter()
        .map(|t| {
            Command::new("ffmpeg")
                .args([
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-rtsp_transport",
                    t,
                    "-i",
                    &h.url("extra"),
                ])
                .args(["-f", "null", "-"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let (status, took) = h.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    for c in &mut clients {
        assert!(
            wait_timeout(c, Duration::from_secs(3)).is_some(),
            "a client hung after shutdown"
        );
    }
}
