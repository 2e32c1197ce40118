//! The ALSA path without sound hardware: an alsa-lib userspace PCM (`type file`
//! reading a FIFO that the test feeds in real time) is captured by `alsasrc`.
//! Also stalls (the writer pauses) and failing sources, with other streams flowing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{FfmpegClient, FifoMic, Harkd, ffmpeg_pull, is_event, msg};

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

/// harkd with `mic` as /mic and a 1 kHz tone as /tone, both flowing.
fn mic_and_tone(mic: &FifoMic) -> Harkd {
    let extra =
        "[[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 1000.0\ntone_dbfs = -12.0\n";
    let h = Harkd::start_with_env(
        &config(mic, extra),
        &[("ALSA_CONFIG_PATH", &mic.alsa_config_path)],
    );
    for s in ["mic", "tone"] {
        h.wait_log(Duration::from_secs(10), |v| {
            is_event(v, "audio is flowing", s)
        });
    }
    h
}

#[test]
fn a_stall_is_reported_within_the_timeout_and_recovers_while_others_flow() {
    let mic = FifoMic::new(700.0, 0.25);
    let h = mic_and_tone(&mic);

    // A client on the other stream for the whole episode, however long a loaded
    // machine makes it: playing (audio decoded) before the stall begins.
    let mut other = FfmpegClient::start(&h.url("tone"), "tcp");
    other.wait_audio(0.5, Duration::from_secs(30));
    let episode = Instant::now();

    let mark = h.mark();
    // From the writer's last chunk: the audio stopped then, whenever the test
    // got to run.
    let silent_since = mic.pause_writing();
    let stalled = h.wait_log_after(mark, Duration::from_secs(30), |v| {
        is_event(v, "capture stalled", "mic")
    });
    let took = silent_since.elapsed();
    let no_audio_ms = stalled["no_audio_ms"].as_u64().unwrap();
    eprintln!("FIGURE stall: reported {took:?} after the last audio, no_audio_ms {no_audio_ms}");
    // Not before the 3 s stall timeout: counted from the last level reading (one
    // every 250 ms, so up to 250 ms before the audio stopped). Load only delays
    // the report, so these lower bounds hold on any machine; the upper bound is
    // the 30 s wait above (10 times the timeout): a stall never reported fails.
    assert!(
        took >= Duration::from_millis(2500),
        "stall reported {took:?} after the audio stopped (timeout 3 s)"
    );
    assert!(no_audio_ms >= 3000, "{stalled}");

    // The subject: the source stays stalled a while (the retry finds the old
    // pipeline stuck in its read) while the other stream plays on.
    std::thread::sleep(Duration::from_secs(2));
    let mark2 = h.mark();
    mic.resume_writing();
    h.wait_log_after(mark2, Duration::from_secs(30), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    let episode = episode.elapsed().as_secs_f64();
    ffmpeg_pull(&h.url("mic"), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);

    // The other stream never missed a beat: every 250 ms window holds the tone,
    // from before the stall until after the recovery.
    let pcm = other.stop();
    eprintln!(
        "FIGURE stall: episode {episode:.2} s, other stream decoded {:.2} s",
        pcm.seconds()
    );
    pcm.assert_unbroken(episode + 0.5, 1000.0, -15.0);
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
    // Wait for four failures of the broken stream (nominally 1+2+4 s of
    // backoff at most, with jitter).
    let (retries, took) = common::wait_for(
        Duration::from_secs(60),
        "four restarts of the broken stream",
        || {
            let r = h.logs_after(0, |v| is_event(v, "restart scheduled", "broken"));
            if r.len() >= 4 {
                Ok(r)
            } else {
                Err(format!("{} so far; log:\n{}", r.len(), h.raw_log()))
            }
        },
    );
    eprintln!("FIGURE backoff: four restarts scheduled within {took:?}");
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
    // A 503 for the broken stream, not a hang: the probe's client gives up on a
    // read after 5 s (hundreds of times what an answer takes), so a server that
    // holds the request (say, until the source comes back) fails here.
    let t = Instant::now();
    let status = common::rtsp_client::describe_probe(&h.url("broken")).unwrap();
    assert_eq!(status, 503);
    let took = t.elapsed();
    eprintln!("FIGURE describe: 503 for the broken stream in {took:?}");
    assert!(took < Duration::from_secs(5), "503 after {took:?}");
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
    // pipeline cannot finish stopping while a read is stuck. Stuck means a
    // capture thread blocked reading the drained FIFO, seen in /proc.
    mic.pause_writing();
    let took = mic.wait_reader_stuck(h.pid(), Duration::from_secs(10));
    eprintln!("FIGURE stuck read: capture blocked on the FIFO {took:?} after the writer stopped");
    let mark = h.mark();
    h.reload(without_mic);
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "stream removed", "mic")
    });
    // Back again at once (replugged): it must not open the device a second time.
    let mark = h.mark();
    h.reload(&with_mic);
    h.wait_log_after(mark, Duration::from_secs(10), |v| {
        is_event(v, "waiting for the previous pipeline to stop", "mic")
    });
    // The subject: for as long as the old pipeline is stuck (it stays stuck
    // until the writer resumes), no second capture starts. Half a second of
    // watching; load can only make a wrong start show later, never a right
    // wait look wrong.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        h.logs_after(mark, |v| is_event(v, "capture started", "mic"))
            .is_empty()
    );
    // The device comes back: the old pipeline lets go, the new one starts.
    mic.resume_writing();
    h.wait_log_after(mark, Duration::from_secs(30), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    ffmpeg_pull(&h.url("mic"), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
}

/// A DESCRIBE waits until its media has a first buffer. One for a mic that is
/// stalling (its last audio came a moment ago, the stall not yet declared) must
/// hold up neither the other streams' clients nor the agent, and must be
/// answered when the stall is declared; later ones are answered 503 at once.
#[test]
fn a_describe_for_a_stalling_mic_holds_up_no_other_client() {
    use common::rtsp_client::describe_probe;
    let mic = FifoMic::new(700.0, 0.25);
    let h = mic_and_tone(&mic);
    let mark = h.mark();
    let silent_since = mic.pause_writing();
    // Within a second of the last audio: taken in, and left waiting.
    let stalling = h.url("mic");
    let waiting = std::thread::spawn(move || {
        let t = Instant::now();
        (describe_probe(&stalling), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let other = describe_probe(&h.url("tone"));
    let other_took = t.elapsed();
    // Past a second without audio, before the stall is declared: 503 at once.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(silent_since.elapsed()));
    let t = Instant::now();
    let stale = describe_probe(&h.url("mic"));
    let stale_took = t.elapsed();
    let (answer, waited) = waiting.join().unwrap();
    h.wait_log_after(mark, Duration::from_secs(30), |v| {
        is_event(v, "capture stalled", "mic")
    });
    let t = Instant::now();
    let later = describe_probe(&h.url("mic"));
    let later_took = t.elapsed();
    eprintln!(
        "FIGURE describe: other stream {other:?} in {other_took:?}; a second without audio {stale:?} \
         in {stale_took:?}; the stalling mic {answer:?} \
         after {waited:?} ({:?} after its last audio), later {later:?} in {later_took:?}",
        silent_since.elapsed()
    );
    assert_eq!(other, Ok(200));
    assert!(other_took < Duration::from_secs(1), "{other_took:?}");
    // The probe gives up after 5 s; the stall is declared after 3.
    assert_eq!(answer, Ok(503));
    assert_eq!(stale, Ok(503));
    assert!(stale_took < Duration::from_millis(500), "{stale_took:?}");
    assert_eq!(later, Ok(503));
    assert!(later_took < Duration::from_secs(1), "{later_took:?}");
    // The media thread was not held up either: the mic comes back.
    let mark = h.mark();
    mic.resume_writing();
    h.wait_log_after(mark, Duration::from_secs(30), |v| {
        is_event(v, "audio is flowing", "mic")
    });
    ffmpeg_pull(&h.url("mic"), "tcp", 1.5).assert_tone(1.4, 700.0, -15.0);
}
