//! The HTTP status endpoint against the real binary on loopback: every route,
//! status codes, the JSON fields, /metrics through a Prometheus text parser, bad
//! and hostile requests, slow clients, the connection bound, and load while a
//! stream plays undisturbed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{FfmpegClient, Harkd, ffmpeg_pull, is_event};
use common::{http_body as body, http_get_full as get, http_raw as raw};

const TONE: &str = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n";

#[test]
fn routes_status_codes_json_and_metrics() {
    let cfg = format!(
        "{TONE}\n[[stream]]\nname = \"broken\"\nsource = \"alsa\"\ndevice = \"hw:CARD=NoSuchCard,DEV=0\"\n"
    );
    let h = Harkd::start(&cfg);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "capture failed", "broken")
    });

    // One client for a second, so bytes have been sent. The count reaches the
    // snapshot with the next level reading (every 250 ms): wait for it rather
    // than guess how long that takes. 1 s of 64 kb/s Opus is about 8 kB.
    ffmpeg_pull(&h.url("tone"), "tcp", 1.0).assert_tone(0.9, 1000.0, -15.0);
    common::wait_for(
        Duration::from_secs(10),
        "the bytes sent in the status",
        || {
            let v: serde_json::Value =
                serde_json::from_str(&common::http_get(h.http_port, "/api/v1/status"))
                    .map_err(|e| e.to_string())?;
            let sent = v["streams"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == "tone"))
                .and_then(|s| s["bytes_sent"].as_u64())
                .unwrap_or(0);
            if sent > 4000 {
                Ok(())
            } else {
                Err(format!("bytes_sent {sent}"))
            }
        },
    );
    // The broken stream is between retries nearly all the time ("failed"), but a
    // retry briefly makes it "starting": look until the answer names the failure.
    let ((code, resp), _) = common::wait_for(
        Duration::from_secs(10),
        "/healthz naming the failed stream",
        || {
            let (code, resp) = get(h.http_port, "/healthz");
            if body(&resp).contains("broken is failed") {
                Ok((code, resp))
            } else {
                Err(resp)
            }
        },
    );
    assert_eq!(code, 503, "{resp}");
    assert!(
        body(&resp).starts_with("1 of 2 streams not running: broken is failed (src: "),
        "{resp}"
    );

    let (code, resp) = get(h.http_port, "/api/v1/status");
    assert_eq!(code, 200);
    assert!(
        resp.contains("Content-Type: application/json")
            || resp.contains("content-type: application/json"),
        "{resp}"
    );
    let v: serde_json::Value = serde_json::from_str(body(&resp)).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["state"], "degraded");
    assert_eq!(v["rtsp_port"], h.port);
    assert!(v["uptime_seconds"].is_u64());
    let streams = v["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let tone = streams.iter().find(|s| s["name"] == "tone").unwrap();
    for key in [
        "state",
        "codec",
        "sample_rate",
        "channels",
        "clients",
        "bytes_sent",
        "peak_dbfs",
        "rms_dbfs",
        "silent",
        "restarts",
        "stalls",
        "failures",
        "last_error",
        "card",
    ] {
        assert!(
            tone.get(key).is_some(),
            "stream field {key} missing: {tone}"
        );
    }
    assert_eq!(tone["state"], "running");
    assert!(
        (tone["peak_dbfs"].as_f64().unwrap() + 12.0).abs() < 1.0,
        "{tone}"
    );
    let broken = streams.iter().find(|s| s["name"] == "broken").unwrap();
    assert!(broken["failures"].as_u64().unwrap() >= 1);
    assert!(v["devices"].is_array());

    let (code, resp) = get(h.http_port, "/metrics");
    assert_eq!(code, 200);
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{resp}"
    );
    let text = body(&resp);
    assert!(
        text.contains("# HELP hark_stream_running ")
            && text.contains("# TYPE hark_stream_restarts_total counter"),
        "{text}"
    );
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let sample = |name: &str, stream: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("stream") == Some(stream))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(sample("hark_stream_running", "tone"), Some(1.0));
    assert_eq!(sample("hark_stream_running", "broken"), Some(0.0));
    assert!(sample("hark_stream_failures_total", "broken").unwrap() >= 1.0);
    // 1 s of 64 kb/s Opus is about 8 kB.
    assert!(sample("hark_stream_bytes_sent_total", "tone").unwrap() > 4000.0);
    assert_eq!(sample("hark_stream_bytes_sent_total", "broken"), Some(0.0));
    assert!((sample("hark_stream_rms_dbfs", "tone").unwrap() + 15.0).abs() < 1.5);
    assert!(scrape.samples.iter().any(|s| s.metric == "hark_build_info"));

    // HEAD, unknown paths, wrong methods.
    let (code, resp) = raw(
        h.http_port,
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 503);
    assert!(body(&resp).is_empty());
    assert_eq!(get(h.http_port, "/nope").0, 404);
    // `/` is the status page (agent/tests/web.rs tests it in a browser).
    let (code, page) = get(h.http_port, "/");
    assert_eq!(code, 200);
    assert!(page.contains("<script src=\"/app.js\""), "{page}");
    assert_eq!(get(h.http_port, "/index.html").0, 404);
    let (code, resp) = raw(
        h.http_port,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 405);
    assert!(
        resp.to_ascii_lowercase().contains("allow: get, head"),
        "{resp}"
    );
}

#[test]
fn healthz_is_ok_when_every_stream_runs() {
    let h = Harkd::start(TONE);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    let (code, resp) = get(h.http_port, "/healthz");
    assert_eq!((code, body(&resp)), (200, "ok\n"));
}

#[test]
fn hostile_requests_are_refused_and_harm_nothing() {
    let h = Harkd::start(TONE);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(matches!(raw(h.http_port, &garbage).0, 0 | 400));
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert!(matches!(raw(h.http_port, huge.as_bytes()).0, 0 | 431 | 400));
    assert!(matches!(
        raw(
            h.http_port,
            b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .0,
        0 | 400 | 404
    ));
    assert!(matches!(
        raw(h.http_port, b"GET /healthz HTTP/9.9\r\n\r\n").0,
        0 | 400 | 505
    ));
    // A slow-loris client is cut off after the header timeout (5 s): not before
    // (load only delays the cut), and by the server, not by our own 50 s read
    // timeout (10 times the header timeout): a server that never cuts fails.
    let mut slow = TcpStream::connect(("127.0.0.1", h.http_port)).unwrap();
    let t = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(50)))
        .unwrap();
    let mut buf = Vec::new();
    let read = slow.read_to_end(&mut buf);
    let took = t.elapsed();
    eprintln!("FIGURE slow client: cut off after {took:?} (header timeout 5 s)");
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "slow client still held after {took:?}"
    );
    assert!(
        took >= Duration::from_secs(4),
        "slow client cut off after {took:?}, before the 5 s header timeout"
    );
    // Still serving, and the stream never noticed.
    assert_eq!(get(h.http_port, "/healthz").0, 200);
    assert!(
        h.logs_after(0, |v| is_event(v, "capture failed", "tone"))
            .is_empty()
    );
}

#[test]
fn connections_are_bounded() {
    let h = Harkd::start(TONE);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    // Hold 64 idle connections (the bound): the 65th is closed at once. No
    // wait needed: the server takes connections from the listen queue in
    // order, and takes a slot for each as it accepts it, so the 64 have their
    // slots before the 65th is looked at, however late that happens.
    let held: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", h.http_port)).unwrap())
        .collect();
    let (code, _) = get(h.http_port, "/healthz");
    assert_eq!(code, 0, "a connection beyond the bound was served");
    drop(held);
    // Slots come back as the server sees the held connections close.
    let took = common::wait_until(
        Duration::from_secs(10),
        "a request served once the held connections closed",
        || get(h.http_port, "/healthz").0 == 200,
    );
    eprintln!("FIGURE connection bound: a slot free again {took:?} after closing");
}

#[test]
fn a_thousand_requests_while_a_stream_plays_undisturbed() {
    let h = Harkd::start(TONE);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    // A listener playing (audio decoded) before the load starts and until after
    // it ends, however long a loaded machine makes it.
    let mut listener = FfmpegClient::start(&h.url("tone"), "udp");
    listener.wait_audio(0.5, Duration::from_secs(30));
    let before = listener.seconds();
    let port = h.http_port;
    let t = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                let paths = ["/healthz", "/metrics", "/api/v1/status", "/nope"];
                let mut bad = 0;
                for i in 0..125 {
                    let path = paths[(w + i) % paths.len()];
                    let (code, _) = get(port, path);
                    let want = if path == "/nope" { 404 } else { 200 };
                    if code != want {
                        bad += 1;
                    }
                }
                bad
            })
        })
        .collect();
    let bad: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let took = t.elapsed();
    assert_eq!(bad, 0, "wrong answers among 1000 requests");
    eprintln!("FIGURE http: 1000 requests in {took:?}");
    // Audio for the whole load and half a second after, and six seconds at
    // least (as before): then every 250 ms window must hold the tone.
    let want = (before + took.as_secs_f64() + 0.5).max(6.0);
    listener.wait_audio(want, Duration::from_secs(60));
    let pcm = listener.stop();
    pcm.assert_unbroken(want, 1000.0, -15.0);
}
