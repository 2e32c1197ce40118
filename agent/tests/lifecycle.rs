//! Streams come and go at run time (config reload, as the device watcher will do on
//! unplug): a removed stream ends its clients cleanly, and the agent's threads and
//! file descriptors return to where they were. Shutdown is graceful and bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{FfmpegClient, Harkd, ffmpeg_pull, is_event, msg};

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
/// the agent closed the client and the client ended.
fn add_play_remove(h: &Harkd, transport: &str) {
    let mark = h.mark();
    h.reload(&config(true));
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "extra")
    });
    let mut client = FfmpegClient::start(&h.url("extra"), transport);
    // Playing: audio decoded (fails at once if the client ends first).
    client.wait_audio(0.5, Duration::from_secs(30));
    let mark = h.mark();
    let removed = Instant::now();
    h.reload(&config(false));
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "stream removed", "extra")
    });
    // The agent's account: it closed the one client of the stream.
    let unmounted = h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "unmounted", "extra")
    });
    assert_eq!(unmounted["clients_closed"], 1, "{unmounted}");
    // The client's: it ended. Nominally at once; 8 s is far beyond that and still
    // short of ffmpeg's own 10 s give-up on a silent UDP session, so a client
    // left connected but starved cannot pass for one that was ended.
    let status = client.wait_exit(Duration::from_secs(8));
    let took = removed.elapsed();
    assert!(
        status.is_some(),
        "ffmpeg ({transport}) still running 8 s after the stream was removed"
    );
    eprintln!("FIGURE removal: {transport} client ended {took:?} after the reload");
}

/// Waits (at most 30 s) until neither count is above `want`, failing with both.
fn settle(h: &Harkd, want: (usize, usize), after: &str) {
    let ((), took) = common::wait_for(
        Duration::from_secs(30),
        &format!("(threads, fds) back to {want:?} after removing a {after} stream"),
        || {
            let now = (h.threads(), h.fds());
            if now.0 <= want.0 && now.1 <= want.1 {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    );
    eprintln!("FIGURE removal: threads and fds back to {want:?} within {took:?}");
}

/// (threads, fds) once they have not changed for 2 s (at most 15 s): idle
/// threads of the first cycle (GStreamer's task pools) end on their own.
fn steady(h: &Harkd) -> (usize, usize) {
    let (fds, threads) = h.steady_counts(Duration::from_secs(2), Duration::from_secs(15));
    (threads, fds)
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
        add_play_remove(&h, transport);
        settle(&h, baseline, transport);
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
fn shutdown_with_clients_is_graceful_and_bounded() {
    let mut h = Harkd::start(&config(true));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "extra")
    });
    let mut clients: Vec<_> = ["tcp", "udp"]
        .iter()
        .map(|t| FfmpegClient::start(&h.url("extra"), t))
        .collect();
    // Both playing (audio decoded) before the shutdown.
    for c in &mut clients {
        c.wait_audio(0.5, Duration::from_secs(30));
    }
    // Exits, cleanly, within Harkd::shutdown's 15 s (a hang fails; the agent's
    // own budget is 2 s, which the time printed shows against a quiet machine).
    let (status, _) = h.shutdown();
    assert!(status.success(), "exit status {status:?}");
    // Gracefully: both clients closed by the agent, every pipeline stopped
    // within its own deadline, and the agent got to the end.
    let media = h.wait_log(Duration::from_secs(10), |v| msg(v) == "media stopped");
    assert_eq!(media["clients_closed"], 2, "{media}");
    eprintln!(
        "FIGURE shutdown: media stopped in {} ms by the agent's clock",
        media["elapsed_ms"]
    );
    assert!(
        h.logs_after(0, |v| msg(v).starts_with("pipelines did not stop in time"))
            .is_empty(),
        "{}",
        h.raw_log()
    );
    h.wait_log(Duration::from_secs(10), |v| msg(v) == "stopped");
    for c in &mut clients {
        assert!(
            c.wait_exit(Duration::from_secs(10)).is_some(),
            "a client hung after shutdown"
        );
    }
}

/// A reload applies what it can at once and names, in the log and in the
/// status (STATUS= and D-Bus say the same), every changed key that waits for a
/// restart; the running listener stays where it was until then.
#[test]
fn a_reload_names_the_keys_that_need_a_restart() {
    let h = Harkd::start(&config(false));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "keep")
    });
    let other_port = common::free_port();
    let moved = config(true).replace("port = @PORT@", &format!("port = {other_port}"));
    let mark = h.mark();
    h.reload(&moved);
    let line = h.wait_log_after(mark, Duration::from_secs(10), |v| {
        msg(v) == "configuration reloaded"
    });
    assert_eq!(line["needs_restart"], "[\"rtsp.port\"]", "{line}");
    assert!(
        line["report"]
            .as_str()
            .unwrap()
            .contains("restart harkd to apply rtsp.port"),
        "{line}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&common::http_get(h.http_port, "/api/v1/status")).unwrap();
    assert_eq!(status["pending_restart"], serde_json::json!(["rtsp.port"]));
    // The rest applied: the new stream plays, on the port still in use.
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "extra")
    });
    ffmpeg_pull(&h.url("extra"), "tcp", 1.0).assert_tone(0.9, 300.0, -15.0);
    // Back to the running port: nothing waits any more.
    let mark = h.mark();
    h.reload(&config(true));
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        msg(v) == "configuration reloaded"
    });
    let status: serde_json::Value =
        serde_json::from_str(&common::http_get(h.http_port, "/api/v1/status")).unwrap();
    assert_eq!(status["pending_restart"], serde_json::json!([]));
}
