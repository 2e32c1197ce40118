//! Recording end to end: segments written by the real binary, read back by
//! ffprobe and ffmpeg. Cuts lose nothing (checked sample by sample on FLAC), a
//! SIGKILL leaves a playable file that the next start keeps, retention deletes
//! by age and size, and a full filesystem (a tmpfs; root only) pauses
//! recording while the stream plays on, then recording resumes by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{Harkd, Pcm, ffmpeg_pull, http_get, is_event, wait_until};
use serde_json::Value;

/// -20 dBFS peak: -23 dBFS RMS.
const TONE_RMS: f64 = -23.0;

fn config(rec_dir: &Path, recording: &str, streams: &str) -> String {
    format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n[devices]\nenabled = false\nstate_dir = \"{}\"\n[recording]\ndirectory = \"{}\"\n{recording}\n{streams}",
        rec_dir.join("state").display(),
        rec_dir.display()
    )
}

fn tone_stream(name: &str, codec: &str) -> String {
    format!(
        "[[stream]]\nname = \"{name}\"\nsource = \"tone\"\ntone_hz = 440.0\ncodec = \"{codec}\"\nrecord = true\n\n"
    )
}

/// The stream's segment files, sorted by name (= by start).
fn segments(dir: &Path, stream: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(stream))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn ffprobe(path: &Path) -> (String, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    (get("codec_name"), get("duration").parse().unwrap_or(0.0))
}

/// Decodes a file to mono S16 at 48 kHz.
fn decode(path: &Path) -> Pcm {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Pcm::from_bytes(&out.stdout)
}

fn samples(p: &Pcm) -> Vec<f64> {
    p.0.channel(0)
        .iter()
        .map(|&v| f64::from(v) / 32768.0)
        .collect()
}

/// How far sample `i` is from what a pure sine at `hz` predicts from the two
/// before it (x[n] = 2 cos(w) x[n-1] - x[n-2]), in 16-bit steps. A lost or
/// doubled buffer is a jump in phase: tens to thousands of steps.
fn sine_residual(x: &[f64], i: usize, hz: f64) -> f64 {
    let c = 2.0 * (2.0 * std::f64::consts::PI * hz / 48_000.0).cos();
    ((x[i] - (c * x[i - 1] - x[i - 2])) * 32768.0).abs()
}

/// The largest residual inside a segment, and the residuals at each joint
/// between consecutive segments.
fn residuals(parts: &[Vec<f64>], hz: f64) -> (f64, Vec<f64>) {
    let mut inside: f64 = 0.0;
    let mut joints = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        // Skip the encoder's first and last block (warm-up, padding).
        for i in 4800..p.len().saturating_sub(4800) {
            inside = inside.max(sine_residual(p, i, hz));
        }
        if let Some(next) = parts.get(k + 1) {
            let mut joined = p[p.len() - 2..].to_vec();
            joined.extend_from_slice(&next[..2]);
            joints.push(sine_residual(&joined, 2, hz).max(sine_residual(&joined, 3, hz)));
        }
    }
    (inside, joints)
}

#[test]
fn the_residual_sees_one_lost_buffer() {
    // The check below can fail: a sine with 1024 samples cut out of it.
    let s: Vec<f64> = (0..48_000)
        .map(|n| {
            (0.1 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 48_000.0).sin() * 32768.0)
                .round()
                / 32768.0
        })
        .collect();
    let (a, b) = (s[..20_000].to_vec(), s[21_024..].to_vec());
    let (inside, joints) = residuals(&[a.clone(), s[20_000..].to_vec()], 440.0);
    assert!(inside < 5.0 && joints[0] < 5.0, "{inside} {joints:?}");
    let (_, joints) = residuals(&[a, b], 440.0);
    assert!(joints[0] > 50.0, "a lost buffer not seen: {joints:?}");
}

#[test]
fn segments_are_cut_on_the_wall_clock_and_nothing_is_lost_at_a_cut() {
    let rec = tempfile::tempdir().unwrap();
    let h = Harkd::start(&config(
        rec.path(),
        "segment_s = 10\ntrust_clock = \"always\"\n",
        &(tone_stream("pcm", "l16") + &tone_stream("tone", "opus")),
    ));
    wait_until(
        Duration::from_secs(45),
        "three segments of each stream",
        || segments(rec.path(), "pcm").len() >= 3 && segments(rec.path(), "tone").len() >= 3,
    );
    // The third segments just began: give them audio before the stop (a
    // segment that got none is removed at the stop).
    std::thread::sleep(Duration::from_millis(1500));
    let mut h = h;
    let (status, _) = h.shutdown();
    assert!(status.success(), "{status:?}");
    for (stream, ext, codec) in [("pcm", "flac", "flac"), ("tone", "opus", "opus")] {
        let files = segments(rec.path(), stream);
        assert!(files.len() >= 3, "{files:?}");
        let mut parts = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            // stream_YYYYMMDDTHHMMSSZ.ext, and after the first, on a multiple of 10 s.
            assert!(
                name.starts_with(&format!("{stream}_")) && name.ends_with(&format!("Z.{ext}")),
                "{name}"
            );
            let secs = &name[stream.len() + 14..stream.len() + 16];
            if i > 0 {
                assert!(secs.ends_with('0'), "{name} is not cut on the wall clock");
            }
            let (c, duration) = ffprobe(f);
            assert_eq!(c, codec, "{name}");
            let pcm = decode(f);
            if i > 0 && i + 1 < files.len() {
                // A whole segment: 10 s, cut at the first tick after the boundary.
                assert!((9.4..=10.6).contains(&duration), "{name}: {duration} s");
                pcm.assert_tone(9.0, 440.0, TONE_RMS);
            }
            parts.push(samples(&pcm));
        }
        if stream == "pcm" {
            // Lossless: the sine runs on across every cut, sample for sample.
            let (inside, joints) = residuals(&parts, 440.0);
            assert!(inside < 8.0, "{stream}: residual {inside} inside a segment");
            for (k, j) in joints.iter().enumerate() {
                assert!(
                    *j < 8.0,
                    "{stream}: the cut after segment {k} lost or doubled audio (residual {j}, inside {inside})"
                );
            }
            eprintln!(
                "pcm: {} cuts, residual at cuts {joints:?}, inside {inside:.1}",
                joints.len()
            );
        }
    }
}

fn status(h: &Harkd) -> Value {
    serde_json::from_str(&http_get(h.http_port, "/api/v1/status")).unwrap()
}

#[test]
fn a_killed_recorder_leaves_playable_files_and_the_next_start_keeps_them() {
    let rec = tempfile::tempdir().unwrap();
    let cfg = config(
        rec.path(),
        "trust_clock = \"never\"\n",
        &(tone_stream("tone", "opus") + &tone_stream("pcm", "l16")),
    );
    let mut h = Harkd::start(&cfg);
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "recording segment", "tone")
    });
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "recording segment", "pcm")
    });
    std::thread::sleep(Duration::from_secs(5));
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    let mut kept = Vec::new();
    for (stream, codec) in [("tone", "opus"), ("pcm", "flac")] {
        let files = segments(rec.path(), stream);
        assert_eq!(files.len(), 1, "{files:?}");
        let f = &files[0];
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.contains("-unsynced."),
            "{name}: no marker for an untrusted clock"
        );
        let (c, _) = ffprobe(f);
        assert_eq!(c, codec);
        // Playable up to its last second: 5 s written, at most 1 s lost.
        let pcm = decode(f);
        assert!(pcm.seconds() >= 4.0, "{name}: {} s", pcm.seconds());
        pcm.assert_tone(3.5, 440.0, TONE_RMS);
        kept.push((f.clone(), std::fs::read(f).unwrap()));
    }
    // Started again with the same clock, within the same second or not: a new
    // file each, the old ones untouched.
    let h = Harkd::start(&cfg);
    for stream in ["tone", "pcm"] {
        h.wait_log(Duration::from_secs(10), |v| {
            is_event(v, "recording segment", stream)
        });
    }
    for (f, bytes) in &kept {
        assert_eq!(&std::fs::read(f).unwrap(), bytes, "{} changed", f.display());
    }
    for stream in ["tone", "pcm"] {
        assert_eq!(segments(rec.path(), stream).len(), 2, "{stream}");
    }
    let s = status(&h);
    assert_eq!(
        s["recording"]["streams"]["tone"]["state"], "recording",
        "{s}"
    );
}

fn set_modified(path: &Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

#[test]
fn retention_deletes_by_age_then_by_size_and_reports_what_is_left() {
    let rec = tempfile::tempdir().unwrap();
    let dir = rec.path().join("tone");
    std::fs::create_dir_all(&dir).unwrap();
    const HOUR: u64 = 3600;
    // (name, bytes, age)
    let files: [(&str, usize, u64); 5] = [
        ("tone_20200101T000000Z.opus", 1000, 10 * 24 * HOUR),
        ("tone_20200102T000000Z-unsynced.opus", 1000, 9 * 24 * HOUR),
        ("tone_20200103T000000Z.opus", 600_000, 2 * HOUR),
        ("tone_20200104T000000Z.opus", 600_000, HOUR),
        // Not a name harkd gives: never touched.
        ("notes.opus", 10, 20 * 24 * HOUR),
    ];
    for (name, bytes, age) in files {
        let p = dir.join(name);
        std::fs::write(&p, vec![0u8; bytes]).unwrap();
        set_modified(&p, Duration::from_secs(age));
    }
    let h = Harkd::start(&config(
        rec.path(),
        "keep_days = 1\nmax_bytes = 1048576\nmin_free_bytes = 0\ntrust_clock = \"always\"\n",
        &tone_stream("tone", "opus"),
    ));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "recording segment", "tone")
    });
    let left = |_: ()| -> Vec<String> {
        segments(rec.path(), "tone")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tone_2020") || n == "notes.opus")
            .collect()
    };
    // Age: 20200101 (10 days, keep_days 1). The unsynced one has no known age.
    // Size: 1.2 MB > 1 MiB: the oldest (the unsynced one, then 20200103) go.
    wait_until(Duration::from_secs(15), "retention", || {
        left(()) == ["notes.opus", "tone_20200104T000000Z.opus"]
    });
    // What the status says once the supervisor has the janitor's pass.
    let mut s = status(&h);
    wait_until(Duration::from_secs(15), "the pass in the status", || {
        s = status(&h);
        s["recording"]["disk"]["deleted"] == 3 && s["recording"]["streams"]["tone"]["segments"] == 2
    });
    let r = &s["recording"]["streams"]["tone"];
    assert_eq!(r["state"], "recording", "{s}");
    assert_eq!(r["oldest"], "tone_20200104T000000Z.opus", "{s}");
    assert_eq!(r["newest"], r["file"], "{s}");
    assert!(r["bytes_written"].as_u64().is_some(), "{s}");
    let m = http_get(h.http_port, "/metrics");
    assert!(
        m.contains("hark_recording_state{state=\"recording\",stream=\"tone\"} 1"),
        "{m}"
    );
    assert!(m.contains("hark_recording_deleted_total 3"), "{m}");
    assert!(m.contains("hark_recording_space_ok 1"), "{m}");
}

/// A tmpfs of `size` at `dir`; unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_full_disk_pauses_recording_the_stream_plays_on_and_recording_resumes() {
    if !common::is_root() {
        eprintln!("SKIPPED: a full filesystem needs a tmpfs, so root");
        return;
    }
    let rec = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "hark-rec"])
        .arg(rec.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount a tmpfs at {}", rec.path().display());
    let _tmpfs = Tmpfs(rec.path().to_path_buf());
    // The operator is told too: a webhook for recording paused (and resumed).
    let hook = common::webhook::Receiver::start("ok");
    let alert = format!(
        "\n[[alert]]\nurl = \"{}\"\nevents = [\"recording_paused\"]\n",
        hook.url("http", "/rec")
    );
    let h = Harkd::start(&config(
        rec.path(),
        "min_free_bytes = 2097152\ntrust_clock = \"always\"\n",
        &(tone_stream("pcm", "l16") + &alert),
    ));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "recording segment", "pcm")
    });
    std::thread::sleep(Duration::from_secs(2));
    // Something else fills the disk: only 1 MiB stays free, under the floor,
    // and no recording is big enough to make up for it.
    let filler = rec.path().join("filler");
    let room = free_bytes(rec.path()) - 1024 * 1024;
    std::fs::write(&filler, vec![1u8; usize::try_from(room).unwrap()]).unwrap();
    let paused = h.wait_log(Duration::from_secs(20), |v| {
        is_event(v, "recording paused", "pcm") || common::msg(v).contains("the disk is full")
    });
    eprintln!("paused: {paused}");
    let mut s = status(&h);
    wait_until(Duration::from_secs(20), "the paused flag", || {
        s = status(&h);
        s["recording"]["streams"]["pcm"]["state"] == "paused"
    });
    assert_eq!(s["recording"]["disk"]["space_ok"], false, "{s}");
    assert!(
        s["recording"]["streams"]["pcm"]["reason"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "{s}"
    );
    assert!(
        s["summary"]
            .as_str()
            .unwrap()
            .contains("1 recording paused"),
        "{s}"
    );
    let m = http_get(h.http_port, "/metrics");
    assert!(m.contains("hark_recording_space_ok 0"), "{m}");
    assert!(
        m.contains("hark_recording_state{state=\"paused\",stream=\"pcm\"} 1"),
        "{m}"
    );
    // The stream plays on, untouched.
    assert_eq!(s["streams"][0]["state"], "running", "{s}");
    ffmpeg_pull(&h.url("pcm"), "tcp", 2.0).assert_tone(1.9, 440.0, TONE_RMS);
    let before = segments(rec.path(), "pcm");
    // Room again: recording resumes by itself, in a new segment.
    std::fs::remove_file(&filler).unwrap();
    h.wait_log(Duration::from_secs(30), |v| {
        is_event(v, "recording resumed", "pcm")
    });
    wait_until(Duration::from_secs(20), "recording again", || {
        status(&h)["recording"]["streams"]["pcm"]["state"] == "recording"
    });
    let after = segments(rec.path(), "pcm");
    assert!(
        after.iter().any(|f| !before.contains(f)),
        "no new segment: {before:?} {after:?}"
    );
    // One alert when recording paused, with its reason, one when it resumed.
    hook.wait_for("recording_paused begun and ended", |r| r.len() >= 2);
    let told = hook.bodies("/rec");
    assert_eq!(told.len(), 2, "{told:#?}");
    assert_eq!(
        (&told[0]["event"], &told[0]["active"], &told[1]["active"]),
        (&"recording_paused".into(), &true.into(), &false.into()),
        "{told:#?}"
    );
    assert_eq!(told[0]["stream"], "pcm");
    assert!(
        told[0]["values"]["reason"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "{told:#?}"
    );
}

#[test]
fn busctl_shows_the_recorder_beside_the_device() {
    let rec = tempfile::tempdir().unwrap();
    let bus = common::bus::Bus::open();
    let h = bus.harkd(&config(
        rec.path(),
        "trust_clock = \"always\"\n",
        &(tone_stream("kept", "opus") + "[[stream]]\nname = \"live\"\nsource = \"tone\"\n"),
    ));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "recording segment", "kept")
    });
    let path = "/org/hark/Agent1/device/kept";
    let get = |prop: &str| {
        let (ok, out) = bus.busctl(&[
            "get-property",
            "org.hark.Agent1",
            path,
            "org.hark.Recording1",
            prop,
        ]);
        assert!(ok, "{prop}: {out}");
        out.trim().to_string()
    };
    wait_until(Duration::from_secs(10), "Recording1 on the bus", || {
        bus.busctl(&[
            "get-property",
            "org.hark.Agent1",
            path,
            "org.hark.Recording1",
            "State",
        ])
        .1
        .trim()
            == "s \"recording\""
    });
    let file = get("File");
    assert!(
        file.starts_with("s \"kept_") && file.ends_with(".opus\""),
        "{file}"
    );
    assert_eq!(get("Directory"), format!("s \"{}\"", rec.path().display()));
    assert_eq!(get("Reason"), "s \"\"");
    // A stream that does not record has no Recording1.
    let (_, out) = bus.busctl(&[
        "introspect",
        "org.hark.Agent1",
        "/org/hark/Agent1/device/live",
    ]);
    assert!(
        out.contains("org.hark.Device1") && !out.contains("org.hark.Recording1"),
        "{out}"
    );
}

#[test]
fn a_reload_turns_recording_on_and_off_and_the_stream_never_notices() {
    let rec = tempfile::tempdir().unwrap();
    let cfg = |on: bool| {
        config(
            rec.path(),
            "trust_clock = \"always\"\n",
            &format!(
                "[[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 440.0\nrecord = {on}\n"
            ),
        )
    };
    let h = Harkd::start(&cfg(false));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "audio is flowing", "tone")
    });
    let mut client = common::FfmpegClient::start(&h.url("tone"), "tcp");
    client.wait_audio(1.0, Duration::from_secs(10));
    h.reload(&cfg(true));
    h.wait_log(Duration::from_secs(10), |v| {
        is_event(v, "recording segment", "tone")
    });
    std::thread::sleep(Duration::from_secs(3));
    h.reload(&cfg(false));
    wait_until(Duration::from_secs(10), "the recorder gone", || {
        status(&h)["recording"]["streams"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    });
    std::thread::sleep(Duration::from_secs(1));
    // The client played through both reloads without a gap; no restart.
    let pcm = client.stop();
    assert!(pcm.seconds() >= 4.0, "{} s", pcm.seconds());
    pcm.assert_unbroken(4.0, 440.0, TONE_RMS);
    assert_eq!(common::restarts(&h, "tone"), Some(0));
    // One segment, closed properly, about as long as recording was on.
    let files = segments(rec.path(), "tone");
    assert_eq!(files.len(), 1, "{files:?}");
    let pcm = decode(&files[0]);
    assert!((2.5..6.0).contains(&pcm.seconds()), "{} s", pcm.seconds());
    pcm.assert_tone(2.5, 440.0, TONE_RMS);
}
