//! The ALSA path without sound hardware: an alsa-lib userspace PCM (`type file`
//! reading a FIFO that the test feeds in real time) is captured by `alsasrc`.
//! Also stalls (the writer pauses) and failing sources, with other streams flowing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{FifoMic, Harkd, ffmpeg_pull, is_event, msg};

fn config(mic: &FifoMic, extra: &str) -> String {
    format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
         [[stream]]\nname = \"mic\"\nsource = \"alsa\"\ndevice = \"{}\"\n\n{extra}",
        mic.device
    )
}

#[test]
fn captured_alsa_audio_reaches_the_client() {
    let mic = FifoMic::new(700.0, 0.25);
    let h = Harkd::start_with_env(
        &config(&mic, ""),
        &[("ALSA_CONFIG_PATH", &mic.alsa_config_path)],
    );
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    // 0.25 full scale = -12 dBFS peak, -15 dBFS RMS.
    ffmpeg_pull(&h.url("mic"), "udp", 3.0).assert_tone(2.9, 700.0, -15.0);
}

#[test]
fn a_stall_is_reported_within_the_timeout_and_recovers_while_others_flow() {
    let mic = FifoMic::new(700.0, 0.25);
    let extra =
        "[[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n";
    let h = Harkd::start_with_env(
        &config(&mic, extra),
        &[("ALSA_CONFIG_PATH", &mic.alsa_config_path)],
    );
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });

    // A client on the other stream for the whole episode.
    let url = h.url("tone");
    let other = std::thread::spawn(move || ffmpeg_pull(&url, "tcp", 9.0));
    std::thread::sleep(Duration::from_millis(500));

    let mark = h.mark();
    let paused = Instant::now();
    mic.pause.store(true, Ordering::SeqCst);
    let stalled = h.wait_log_after(mark, Duration::from_secs(6), |v| {
        is_event(v, "capture stalled", "mic")
    });
    let took = paused.elapsed();
    // Stall timeout 3 s, counted from the last level reading (one every 250 ms, so
    // up to 250 ms before the pause), checked every 100 ms.
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(3600),
        "stall reported after {took:?}"
    );
    assert!(stalled["no_audio_ms"].as_u64().unwrap() >= 3000);

    std::thread::sleep(Duration::from_secs(2));
    let mark2 = h.mark();
    mic.pause.store(false, Ordering::SeqCst);
    h.wait_log_after(mark2, Duration::from_secs(8), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    ffmpeg_pull(&h.url("mic"), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);

    // The other stream never missed a beat: every 250 ms window holds the tone.
    let pcm = other.join().unwrap();
    pcm.assert_unbroken(8.9, 1000.0, -15.0);
    assert!(
        h.logs_after(0, |v| is_event(v, "capture stalled", "tone"))
            .is_empty()
    );
}

#[test]
fn a_failing_source_backs_off_while_others_flow() {
    let cfg = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
        [[stream]]\nname = \"broken\"\nsource = \"alsa\"\ndevice = \"hw:CARD=NoSuchCard,DEV=0\"\n\n\
        [[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n";
    let h = Harkd::start(cfg);
    let url = h.url("tone");
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    let other = std::thread::spawn(move || ffmpeg_pull(&url, "udp", 6.0));
    // Wait for four failures of the broken stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    let retries = loop {
        let r = h.logs_after(0, |v| is_event(v, "restart scheduled", "broken"));
        if r.len() >= 4 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(retries.len() >= 4, "{}", h.raw_log());
    let delays: Vec<u64> = retries
        .iter()
        .map(|v| v["retry_in_ms"].as_u64().unwrap())
        .collect();
    // initial 1 s, doubling, jitter 50-100 %.
    assert!(delays[0] <= 1000, "{delays:?}");
    for (i, d) in delays.iter().enumerate() {
        let full = 1000u64 << i;
        assert!(
            *d >= full / 2 && *d <= full,
            "retry {i}: {d} ms not in [{}, {full}]",
            full / 2
        );
    }
    let failed = h.logs_after(0, |v| is_event(v, "capture failed", "broken"));
    assert!(
        failed[0]["reason"].as_str().unwrap().starts_with("src: "),
        "{}",
        failed[0]
    );
    // A 503 for the broken stream, immediately, not a hang.
    let t = Instant::now();
    let status = common::rtsp_client::describe_probe(&h.url("broken")).unwrap();
    assert_eq!(status, 503);
    assert!(t.elapsed() < Duration::from_secs(1));
    other.join().unwrap().assert_tone(5.9, 1000.0, -15.0);
    assert!(
        h.logs_after(0, |v| msg(v) == "capture failed" && v["stream"] == "tone")
            .is_empty()
    );
    // The restart counter users read sees the broken stream's restarts (so a
    // zero elsewhere means something), and none of the healthy one.
    assert!(
        common::restarts(&h, "broken").unwrap() >= 3,
        "{:?}",
        common::restarts(&h, "broken")
    );
    assert_eq!(common::restarts(&h, "tone"), Some(0));
}

#[test]
fn a_stream_added_back_waits_for_its_old_pipeline_to_let_go_of_the_device() {
    let mic = FifoMic::new(700.0, 0.25);
    let with_mic = config(&mic, "");
    let without_mic = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
        [[stream]]\nname = \"tone\"\nsource = \"tone\"\n";
    let h = Harkd::start_with_env(&with_mic, &[("ALSA_CONFIG_PATH", &mic.alsa_config_path)]);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    // The device stops answering, then the stream goes away (an unplug, say): its
    // pipeline cannot finish stopping while a read is stuck.
    mic.pause.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let mark = h.mark();
    h.reload(without_mic);
    h.wait_log_after(mark, Duration::from_secs(5), |v| {
        is_event(v, "stream removed", "mic")
    });
    // Back again at once (replugged): it must not open the device a second time.
    let mark = h.mark();
    h.reload(&with_mic);
    h.wait_log_after(mark, Duration::from_secs(5), |v| {
        is_event(v, "waiting for the previous pipeline to stop", "mic")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        h.logs_after(mark, |v| is_event(v, "capture started", "mic"))
            .is_empty()
    );
    // The device comes back: the old pipeline lets go, the new one starts.
    mic.pause.store(false, Ordering::SeqCst);
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    ffmpeg_pull(&h.url("mic"), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
}
