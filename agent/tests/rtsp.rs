//! RTSP with real clients against the real binary on a free loopback port: the
//! decoded audio must be the configured tone, at the configured level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harkd, ffmpeg_pull, is_event, rtspsrc_pull};

fn tone_config(extra: &str) -> String {
    format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n[[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n{extra}"
    )
}

fn wait_running(h: &Harkd, stream: &str) {
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", stream)
    });
}

/// A sine's RMS is 3 dB under its peak.
const RMS_OF_MINUS_12_PEAK: f64 = -15.0;

#[test]
fn ffmpeg_over_tcp_and_udp_and_rtspsrc_decode_the_tone() {
    let h = Harkd::start(&tone_config(""));
    wait_running(&h, "tone");
    ffmpeg_pull(&h.url("tone"), "tcp", 3.0).assert_tone(2.9, 1000.0, RMS_OF_MINUS_12_PEAK);
    ffmpeg_pull(&h.url("tone"), "udp", 3.0).assert_tone(2.9, 1000.0, RMS_OF_MINUS_12_PEAK);
    rtspsrc_pull(&h.url("tone"), 3.0).assert_tone(2.0, 1000.0, RMS_OF_MINUS_12_PEAK);
    let (status, took) = h.stop();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[test]
fn eight_clients_on_one_stream_all_receive_audio() {
    let h = Harkd::start(&tone_config(""));
    wait_running(&h, "tone");
    let url = h.url("tone");
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            let transport = if i % 2 == 0 { "tcp" } else { "udp" };
            std::thread::spawn(move || ffmpeg_pull(&url, transport, 3.0))
        })
        .collect();
    for c in clients {
        c.join()
            .unwrap()
            .assert_tone(2.9, 1000.0, RMS_OF_MINUS_12_PEAK);
    }
    // One capture pipeline served them all: generation 1, never restarted.
    assert!(
        h.logs_after(0, |v| common::msg(v) == "restarting capture")
            .is_empty()
    );
}

#[test]
fn every_codec_streams_decodable_audio() {
    let cfg = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
        [[stream]]\nname = \"pcm\"\nsource = \"tone\"\ntone_hz = 500.0\ntone_dbfs = -6.0\ncodec = \"l16\"\nchannels = 2\n\n\
        [[stream]]\nname = \"aac\"\nsource = \"tone\"\ntone_hz = 500.0\ntone_dbfs = -6.0\ncodec = \"aac\"\n\n\
        [[stream]]\nname = \"mp3\"\nsource = \"tone\"\ntone_hz = 500.0\ntone_dbfs = -6.0\ncodec = \"mp3\"\nsample_rate = 44100\n\n\
        [[stream]]\nname = \"hp\"\nsource = \"tone\"\ntone_hz = 500.0\ntone_dbfs = -6.0\nhighpass_hz = 4000.0\n\n\
        [[stream]]\nname = \"gain\"\nsource = \"tone\"\ntone_hz = 500.0\ntone_dbfs = -26.0\ngain_db = 20.0\n";
    let h = Harkd::start(cfg);
    for s in ["pcm", "aac", "mp3", "hp", "gain"] {
        wait_running(&h, s);
    }
    for s in ["pcm", "aac", "mp3"] {
        ffmpeg_pull(&h.url(s), "tcp", 2.0).assert_tone(1.9, 500.0, -9.0);
    }
    // 20 dB of gain brings -26 dBFS peak to -6.
    ffmpeg_pull(&h.url("gain"), "tcp", 2.0).assert_tone(1.9, 500.0, -9.0);
    // A 4 kHz high-pass (4 poles) takes a 500 Hz tone far down.
    let hp = ffmpeg_pull(&h.url("hp"), "tcp", 2.0);
    assert!(
        hp.rms_dbfs(0.5) < -40.0,
        "high-pass left {:.1} dBFS",
        hp.rms_dbfs(0.5)
    );
}

#[test]
fn authentication_when_configured() {
    let h = Harkd::start(&tone_config("").replace(
        "port = @PORT@\n",
        "port = @PORT@\n[rtsp.auth]\nuser = \"birdnet\"\npassword = \"s3cret pass\"\n",
    ));
    wait_running(&h, "tone");
    let status = common::rtsp_client::describe_probe(&h.url("tone")).unwrap();
    assert_eq!(status, 401);
    let url = format!("rtsp://birdnet:s3cret%20pass@127.0.0.1:{}/tone", h.port);
    ffmpeg_pull(&url, "tcp", 1.0).assert_tone(0.9, 1000.0, RMS_OF_MINUS_12_PEAK);
}

#[test]
fn unknown_paths_get_404_and_garbage_does_not_hurt() {
    use std::io::{Read, Write};
    let h = Harkd::start(&tone_config(""));
    wait_running(&h, "tone");
    let status =
        common::rtsp_client::describe_probe(&format!("rtsp://127.0.0.1:{}/nope", h.port)).unwrap();
    assert_eq!(status, 404);
    // Malformed requests: binary garbage, a huge header line, a bogus method.
    let garbage: Vec<Vec<u8>> = vec![
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        format!(
            "DESCRIBE rtsp://127.0.0.1/tone RTSP/1.0\r\nCSeq: 1\r\nX: {}\r\n\r\n",
            "a".repeat(100_000)
        )
        .into_bytes(),
        b"FROB * RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec(),
        b"DESCRIBE rtsp://127.0.0.1/\xff\xfe RTSP/1.0\r\nCSeq: x\r\n\r\n".to_vec(),
    ];
    for g in garbage {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", h.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(&g);
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
    }
    // Still serving.
    ffmpeg_pull(&h.url("tone"), "tcp", 1.0).assert_tone(0.9, 1000.0, RMS_OF_MINUS_12_PEAK);
}
