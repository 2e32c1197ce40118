//! Alerts to webhooks, end to end: harkd posts to real HTTP(S) receivers
//! (`common/webhook.py`, Python's own server and TLS) when a microphone goes
//! silent and comes back, signs what it sends, and a receiver that is down,
//! hangs or fails costs the streams nothing and gets a bounded number of tries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::webhook::Receiver;
use common::{FfmpegClient, FifoMic, Harkd, is_event};
use serde_json::Value;

fn signature_ok(secret: &str, body: &str, header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body.as_bytes(), &tag).is_ok()
}

fn alerts_status(h: &Harkd) -> Vec<Value> {
    let v: Value = serde_json::from_str(&common::http_get(h.http_port, "/api/v1/status")).unwrap();
    v["alerts"].as_array().unwrap().clone()
}

fn mic_config(mic: &FifoMic, alerts: &str) -> String {
    format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[health]\nsilence_after_s = 2\n\n\
         [[stream]]\nname = \"mic\"\nsource = \"alsa\"\ndevice = \"{}\"\n\n\
         [[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n\n{alerts}",
        mic.device
    )
}

#[test]
fn silent_and_back_reach_a_real_receiver_signed_as_json_and_as_text() {
    let rx = Receiver::start("ok");
    let mic = FifoMic::new(700.0, 0.25);
    let alerts = format!(
        "[[alert]]\nname = \"hook\"\nurl = \"{}\"\nsecret = \"s3cret-for-tests\"\n\n\
         [[alert]]\nname = \"ntfy\"\nurl = \"{}\"\nformat = \"text\"\nevents = [\"stream_silent\"]\n",
        rx.url("http", "/hook"),
        rx.url("http", "/ntfy-topic")
    );
    let h = Harkd::start_with_env(
        &mic_config(&mic, &alerts),
        &[("ALSA_CONFIG_PATH", &mic.alsa_config_path)],
    );
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    rx.wait_for("agent_started", |r| {
        r.iter()
            .any(|q| q["body"].as_str().unwrap().contains("agent_started"))
    });

    mic.mute.store(true, std::sync::atomic::Ordering::SeqCst);
    let muted = Instant::now();
    rx.wait_for("silent, as JSON and as text", |r| {
        r.iter()
            .filter(|q| q["body"].as_str().unwrap().contains("silent"))
            .count()
            >= 2
    });
    let told_after = muted.elapsed();
    // Quiet a while longer: level readings four times a second, and the
    // alerts' own 5 s tick, all with nothing new to say.
    std::thread::sleep(Duration::from_secs(6));
    mic.mute.store(false, std::sync::atomic::Ordering::SeqCst);
    rx.wait_for("back, as JSON and as text", |r| {
        r.iter()
            .filter(|q| q["body"].as_str().unwrap().contains("sound again"))
            .count()
            >= 2
    });
    eprintln!(
        "FIGURE alert: silent told {told_after:?} after the mic went quiet (silence_after_s = 2)"
    );

    // JSON: the documented body, one per change, each signed.
    let hook: Vec<Value> = rx
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/hook")
        .collect();
    for r in &hook {
        let body = r["body"].as_str().unwrap();
        let sig = r["headers"]["x-hark-signature"].as_str().unwrap();
        assert!(signature_ok("s3cret-for-tests", body, sig), "{r}");
        // The check can fail: another secret, or one byte of the body changed.
        assert!(!signature_ok("another-secret", body, sig));
        assert!(!signature_ok(
            "s3cret-for-tests",
            &body.replacen('1', "2", 1),
            sig
        ));
        assert_eq!(r["headers"]["content-type"], "application/json");
    }
    let bodies = rx.bodies("/hook");
    let silent: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["event"] == "stream_silent")
        .collect();
    assert_eq!(silent.len(), 2, "one alert per change: {bodies:#?}");
    assert_eq!(silent[0]["active"], true);
    assert_eq!(silent[1]["active"], false);
    for b in &silent {
        assert_eq!(b["stream"], "mic");
        assert_eq!(b["reminder"], false);
        assert!(b["values"]["peak_dbfs"].is_number() || b["values"]["peak_dbfs"].is_null());
        assert!(b["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(b["time"].as_str().unwrap().ends_with('Z'));
        assert!(b["agent"].as_str().unwrap().starts_with("harkd "));
    }
    assert_eq!(silent[0]["since"], silent[1]["since"]);
    assert!(silent[1]["values"]["lasted_s"].as_u64().is_some());
    let seqs: Vec<u64> = bodies.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // The tone stream never went silent.
    assert!(!bodies.iter().any(|b| b["stream"] == "tone"), "{bodies:#?}");

    // Text: one line each, only the events asked for, unsigned.
    let text: Vec<Value> = rx
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/ntfy-topic")
        .collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0]["body"].as_str().unwrap().contains("mic is silent"),
        "{}",
        text[0]
    );
    assert!(
        text[1]["body"]
            .as_str()
            .unwrap()
            .contains("mic has sound again"),
        "{}",
        text[1]
    );
    assert!(
        text[0]["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(text[0]["headers"].get("x-hark-signature").is_none());

    let stats = alerts_status(&h);
    assert_eq!(stats[0]["name"], "hook");
    assert_eq!(stats[0]["sent"].as_u64().unwrap() as usize, hook.len());
    assert_eq!(stats[0]["failed"], 0);
    assert_eq!(stats[1]["sent"], 2);
    let metrics = common::http_get(h.http_port, "/metrics");
    assert!(
        metrics.contains(&format!(
            "hark_alerts_sent_total{{alert=\"hook\"}} {}",
            hook.len()
        )),
        "{metrics}"
    );
}

#[test]
fn receivers_down_hanging_or_failing_get_bounded_tries_and_cost_the_streams_nothing() {
    let failing = Receiver::start("fail");
    let hanging = Receiver::start("hang");
    let down_port = common::free_port();
    let mic = FifoMic::new(700.0, 0.25);
    let alerts = format!(
        "[[alert]]\nname = \"failing\"\nurl = \"{}\"\nretries = 2\n\n\
         [[alert]]\nname = \"hanging\"\nurl = \"{}\"\ntimeout_s = 1\nretries = 1\n\n\
         [[alert]]\nname = \"down\"\nurl = \"http://127.0.0.1:{down_port}/hook\"\nretries = 1\n",
        failing.url("http", "/hook"),
        hanging.url("http", "/hook"),
    );
    let h = Harkd::start_with_env(
        &mic_config(&mic, &alerts),
        &[("ALSA_CONFIG_PATH", &mic.alsa_config_path)],
    );
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    // A listener on the other stream for the whole episode, and the HTTP
    // endpoint polled: neither may notice the receivers' trouble.
    let mut other = FfmpegClient::start(&h.url("tone"), "tcp");
    other.wait_audio(0.5, Duration::from_secs(30));
    let episode = Instant::now();
    let port = h.http_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let polling = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut polls = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let (code, _) = common::http_get_full(port, "/healthz");
                slowest = slowest.max(t.elapsed());
                assert!(code == 200 || code == 503, "/healthz {code}");
                polls += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (polls, slowest)
        })
    };

    // More to say: the mic goes silent and comes back.
    mic.mute.store(true, std::sync::atomic::Ordering::SeqCst);
    h.wait_log(Duration::from_secs(30), |v| {
        is_event(v, "stream is silent", "mic")
    });
    mic.mute.store(false, std::sync::atomic::Ordering::SeqCst);

    // Every alert tried 1 + retries times, then given up on.
    let status = common::wait_for(Duration::from_secs(60), "every alert given up on", || {
        let s = alerts_status(&h);
        let done = s
            .iter()
            .all(|a| a["queued"] == 0 && a["failed"].as_u64().unwrap() >= 3 && a["sent"] == 0);
        if done { Ok(s) } else { Err(format!("{s:#?}")) }
    })
    .0;
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (polls, slowest) = polling.join().unwrap();
    let pcm = other.stop();
    let seconds = episode.elapsed().as_secs_f64();
    eprintln!(
        "FIGURE alert: receivers in trouble for {seconds:.1} s: {polls} /healthz polls, slowest {slowest:?}; \
         the other stream decoded {:.1} s; status {status:#?}",
        pcm.seconds()
    );
    pcm.assert_unbroken(seconds - 1.0, 1000.0, -15.0);
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );

    let by_name = |n: &str| status.iter().find(|a| a["name"] == n).unwrap().clone();
    let events = |r: &Receiver| -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for q in r.requests() {
            let b = q["body"].as_str().unwrap();
            let v: Value = serde_json::from_str(b).unwrap();
            *m.entry(format!("{}/{}/{}", v["event"], v["active"], v["seq"]))
                .or_default() += 1;
        }
        m
    };
    // 500: each alert exactly three times (1 + retries = 2), backed off.
    let f = by_name("failing");
    let tries = events(&failing);
    assert!(tries.values().all(|n| *n == 3), "{tries:#?}");
    assert_eq!(tries.len() as u64, f["failed"].as_u64().unwrap());
    assert_eq!(f["retries"].as_u64().unwrap(), 2 * tries.len() as u64);
    assert!(f["last_error"].as_str().unwrap().contains("500"), "{f}");
    let first: Vec<f64> = failing
        .requests()
        .iter()
        .filter(|q| q["body"].as_str().unwrap().contains("agent_started"))
        .map(|q| q["t"].as_f64().unwrap())
        .collect();
    assert!(
        first[1] - first[0] >= 0.9 && first[2] - first[1] >= 1.9,
        "{first:?}"
    );
    // Hanging: each alert twice, each try cut at its 1 s timeout.
    let g = by_name("hanging");
    let tries = events(&hanging);
    assert!(tries.values().all(|n| *n == 2), "{tries:#?}");
    assert_eq!(tries.len() as u64, g["failed"].as_u64().unwrap());
    assert!(
        g["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("timeout"),
        "{g}"
    );
    // Nobody listening: refused connections, given up on too.
    let d = by_name("down");
    assert!(d["failed"].as_u64().unwrap() >= 3, "{d}");
    assert_eq!(
        d["retries"].as_u64().unwrap(),
        d["failed"].as_u64().unwrap()
    );
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{d}"
    );
    assert_eq!(common::restarts(&h, "tone"), Some(0));
}

/// A test CA and a certificate for 127.0.0.1 it signed: (ca.pem, chain, key).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=hark test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn https_receivers_are_checked_against_the_ca_file_or_the_built_in_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let rx = Receiver::start_tls("ok", Some((&cert, &key)));
    // The secret from a file (as a NixOS or Yocto deployment keeps it out of
    // a world-readable config), its trailing newline not part of it.
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "from-a-file\n").unwrap();
    let alerts = format!(
        "[[alert]]\nname = \"trusted\"\nurl = \"{}\"\nca_file = \"{}\"\nsecret_file = \"{}\"\n\n\
         [[alert]]\nname = \"untrusted\"\nurl = \"{}\"\nretries = 0\n",
        rx.url("https", "/trusted"),
        ca.display(),
        secret_file.display(),
        rx.url("https", "/untrusted"),
    );
    let cfg = format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
         [[stream]]\nname = \"tone\"\nsource = \"tone\"\n\n{alerts}"
    );
    let h = Harkd::start(&cfg);
    rx.wait_for("agent_started over TLS", |r| !r.is_empty());
    let status = common::wait_for(
        Duration::from_secs(30),
        "the untrusted one given up on, the trusted one counted",
        || {
            let s = alerts_status(&h);
            // The receiver has the request before harkd has read the
            // answer and counted it: wait for the count too.
            if s[1]["failed"] == 1 && s[0]["sent"] == 1 {
                Ok(s)
            } else {
                Err(format!("{s:#?}"))
            }
        },
    )
    .0;
    eprintln!("FIGURE alert tls: {status:#?}");
    assert_eq!(status[0]["sent"], 1);
    assert_eq!(status[0]["host"], format!("127.0.0.1:{}", rx.port));
    let err = status[1]["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    // The receiver saw the trusted one only (the other never got past the handshake).
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0]["path"], "/trusted");
    let sig = reqs[0]["headers"]["x-hark-signature"].as_str().unwrap();
    assert!(signature_ok(
        "from-a-file",
        reqs[0]["body"].as_str().unwrap(),
        sig
    ));
}

#[test]
fn an_unreadable_ca_file_keeps_the_agent_streaming_and_says_why() {
    let rx = Receiver::start("ok");
    let cfg = format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\n\n\
         [[alert]]\nname = \"broken\"\nurl = \"https://127.0.0.1:{}/x\"\nca_file = \"/nonexistent/ca.pem\"\n\n\
         [[alert]]\nname = \"fine\"\nurl = \"{}\"\n",
        rx.port,
        rx.url("http", "/fine")
    );
    let h = Harkd::start(&cfg);
    rx.wait_for("the other webhook's agent_started", |r| !r.is_empty());
    let s = alerts_status(&h);
    assert!(
        s[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/ca.pem"),
        "{s:#?}"
    );
    assert_eq!(s[0]["failed"], 1);
    assert_eq!(s[1]["sent"], 1);
    common::ffmpeg_pull(&h.url("tone"), "tcp", 1.0).assert_tone(0.9, 440.0, -25.0);
}
