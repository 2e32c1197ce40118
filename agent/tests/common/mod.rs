//! Shared helpers for the end-to-end tests: run the real `harkd` binary on a free
//! loopback port, read its JSON log, and pull audio with real RTSP clients.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod bus;
#[path = "../../src/devices/fixture.rs"]
pub mod fixture;
pub mod rtsp_client;
pub mod webhook;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const HARKD: &str = env!("CARGO_BIN_EXE_harkd");

/// A free TCP port on loopback (bound and released; the tests run few servers).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// How often the bounded waits below look again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `cond` until it holds, for at most `timeout`; panics naming `what`
/// when it never does. Returns how long it took. A condition wait, for tests on
/// a loaded machine: never a bare sleep standing in for "long enough".
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    wait_for(timeout, what, || {
        if cond() { Ok(()) } else { Err(String::new()) }
    })
    .1
}

/// Polls `probe` until it returns `Ok`, for at most `timeout`; panics naming
/// `what` and the last `Err` (the state seen last) when it never does.
/// Returns the value and how long it took.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return (v, start.elapsed()),
            Err(last) => {
                assert!(
                    start.elapsed() < timeout,
                    "timed out after {timeout:?} waiting for {what}{}{last}",
                    if last.is_empty() { "" } else { "; last seen: " }
                );
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Puts the test's ports into a config: `@PORT@` (RTSP), and the HTTP endpoint
/// on its own free port unless the config has an `[http]` table.
fn fill(config: &str, port: u16, http_port: u16) -> String {
    let mut text = config
        .replace("@PORT@", &port.to_string())
        .replace("@HTTP@", &http_port.to_string());
    if !text.contains("[http]") {
        text.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"));
    }
    text
}

#[derive(Default)]
struct Log {
    lines: Vec<Value>,
    raw: Vec<String>,
    closed: bool,
}

/// A running harkd with its config in a temporary directory.
pub struct Harkd {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The HTTP status endpoint's port.
    pub http_port: u16,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl Harkd {
    /// Starts harkd with `config` (a TOML text in which `@PORT@` is replaced by a
    /// free port), waiting until it logs "harkd ready".
    pub fn start(config: &str) -> Harkd {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Harkd {
        Self::start_with_args(config, env, &[])
    }

    /// Starts harkd with extra `run` options (`--flag value` pairs; `("--flag", "")`
    /// for a flag on its own).
    pub fn start_with_args(config: &str, env: &[(&str, &str)], args: &[(&str, &str)]) -> Harkd {
        let h = Self::spawn(config, env, args);
        // Generous: a loaded machine starts GStreamer slowly.
        h.wait_log(Duration::from_secs(30), |v| msg(v) == "harkd ready");
        h
    }

    /// Starts harkd under `wrapper` (a command that ends by running the
    /// program and arguments given after it: `unshare --net -- ...`),
    /// waiting until it logs "harkd ready".
    pub fn start_wrapped(wrapper: &[&str], config: &str) -> Harkd {
        let h = Self::spawn_in(wrapper, config, &[], &[]);
        h.wait_log(Duration::from_secs(30), |v| msg(v) == "harkd ready");
        h
    }

    /// Starts harkd and returns at once, without waiting for READY.
    pub fn spawn(config: &str, env: &[(&str, &str)], args: &[(&str, &str)]) -> Harkd {
        Self::spawn_in(&[], config, env, args)
    }

    fn spawn_in(
        wrapper: &[&str],
        config: &str,
        env: &[(&str, &str)],
        args: &[(&str, &str)],
    ) -> Harkd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http_port = free_port();
        let path = dir.path().join("hark.toml");
        std::fs::write(&path, fill(config, port, http_port)).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(HARKD);
                c
            }
            None => Command::new(HARKD),
        };
        cmd.args(["run", "--log-format", "json", "--config"])
            .arg(&path)
            .env("HARK_LOG", "info,hark_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        for (k, v) in args {
            // An empty value: a flag on its own.
            cmd.arg(k);
            if !v.is_empty() {
                cmd.arg(v);
            }
        }
        if !args.iter().any(|(k, _)| *k == "--bus") {
            // Tests that do not start a private bus run without D-Bus.
            cmd.args(["--bus", "none"]);
        }
        let mut child = cmd.spawn().expect("spawn harkd");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*l;
                let mut g = m.lock().unwrap();
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    g.lines.push(v);
                }
                g.raw.push(line);
                cv.notify_all();
            }
            let (m, cv) = &*l;
            m.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Harkd {
            child,
            dir,
            port,
            http_port,
            log,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("hark.toml")
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{stream}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Rewrites the config (same port) and sends SIGHUP.
    /// Writes `config` (ports filled in as at start) and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(self.config_path(), fill(config, self.port, self.http_port)).unwrap();
        self.signal("HUP");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Number of log lines so far; pass it to `wait_log_after` to see only newer ones.
    pub fn mark(&self) -> usize {
        self.log.0.lock().unwrap().lines.len()
    }

    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_log_after(0, timeout, pred)
    }

    /// Waits for a JSON log line after index `from` matching `pred`; panics with the
    /// log on timeout.
    pub fn wait_log_after(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.log;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(v) = g.lines.iter().skip(from).find(|v| pred(v)) {
                return v.clone();
            }
            let now = Instant::now();
            if now >= deadline || g.closed {
                panic!(
                    "log line not found within {timeout:?} (harkd {}); log:\n{}",
                    if g.closed { "exited" } else { "running" },
                    g.raw.join("\n")
                );
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// All JSON log lines after `from` matching `pred`.
    pub fn logs_after(&self, from: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let g = self.log.0.lock().unwrap();
        g.lines
            .iter()
            .skip(from)
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    pub fn raw_log(&self) -> String {
        self.log.0.lock().unwrap().raw.join("\n")
    }

    /// SIGTERM and wait; returns the exit status and how long the exit took.
    pub fn stop(mut self) -> (ExitStatus, Duration) {
        self.shutdown()
    }

    /// SIGTERM and wait (15 s at most: a bound that load cannot reach, far above
    /// the agent's own 2 s budget, so a hung shutdown still fails); returns the
    /// exit status and how long the exit took, printed as a FIGURE. The log
    /// stays readable afterwards.
    pub fn shutdown(&mut self) -> (ExitStatus, Duration) {
        let t = Instant::now();
        self.signal("TERM");
        let status = wait_timeout(&mut self.child, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("harkd did not exit within 15 s of SIGTERM"));
        let took = t.elapsed();
        eprintln!("FIGURE shutdown: harkd exited {took:?} after SIGTERM ({status})");
        (status, took)
    }

    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .count()
    }

    /// Each thread's (name, scheduling policy: 0 SCHED_OTHER, 3 SCHED_BATCH),
    /// from /proc (a thread that ends while read is left out).
    pub fn thread_policies(&self) -> Vec<(String, u32)> {
        let dir = format!("/proc/{}/task", self.pid());
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let (Ok(comm), Ok(sched)) = (
                std::fs::read_to_string(p.join("comm")),
                std::fs::read_to_string(p.join("sched")),
            ) else {
                continue;
            };
            let policy = sched
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == "policy").then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no policy line in {}/sched", p.display()));
            out.push((comm.trim().to_string(), policy));
        }
        out
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// (fds, threads) once neither has changed for `quiet` (`timeout` at most).
    /// Threads of finished work (GStreamer's task pools, GLib's idle pool
    /// threads, which end after 15 s) end on their own: a baseline taken while
    /// they linger would hide a leak of the same size.
    pub fn steady_counts(&self, quiet: Duration, timeout: Duration) -> (usize, usize) {
        let deadline = Instant::now() + timeout;
        let mut last = (self.fds(), self.threads());
        let mut since = Instant::now();
        while Instant::now() < deadline && since.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(100));
            let now = (self.fds(), self.threads());
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Harkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn msg(v: &Value) -> &str {
    v.get("message").and_then(Value::as_str).unwrap_or("")
}

pub fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k)
}

pub fn is_event(v: &Value, message: &str, stream: &str) -> bool {
    msg(v) == message && v.get("stream").and_then(Value::as_str) == Some(stream)
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Audio decoded by a client, checked with the analysis every test tier shares
/// (`tools/audiocheck`: duration, level, frequency, continuity).
pub struct Pcm(pub hark_audiocheck::Pcm);

pub const RATE: f64 = 48_000.0;

impl Pcm {
    /// Mono S16LE at 48 kHz, as the clients below decode unless told otherwise.
    pub fn from_bytes(b: &[u8]) -> Pcm {
        Pcm(hark_audiocheck::Pcm::from_s16le(b, 48_000, 1))
    }

    pub fn seconds(&self) -> f64 {
        self.0.seconds()
    }

    /// The analysis of channel `c`.
    pub fn analysis(&self, c: u16) -> hark_audiocheck::Analysis {
        hark_audiocheck::analyse(&self.0.channel(c), self.0.rate)
    }

    /// Asserts every channel holds at least `min_secs` of a tone at `freq` Hz and
    /// `rms` dBFS RMS (±2 dB), with at most one disturbed 250 ms window.
    pub fn assert_tone(&self, min_secs: f64, freq: f64, rms: f64) {
        self.assert_expect(&hark_audiocheck::Expect::tone(min_secs, freq, rms));
    }

    /// As `assert_tone`, with no disturbed window at all: the stream must not
    /// have missed a beat.
    pub fn assert_unbroken(&self, min_secs: f64, freq: f64, rms: f64) {
        self.assert_expect(&hark_audiocheck::Expect {
            max_disturbed: 0,
            ..hark_audiocheck::Expect::tone(min_secs, freq, rms)
        });
    }

    pub fn assert_expect(&self, e: &hark_audiocheck::Expect) {
        for c in 0..self.0.channels {
            let a = self.analysis(c);
            if let Err(why) = a.check(e) {
                panic!(
                    "channel {c} of {} ({} Hz): {why}",
                    self.0.channels, self.0.rate
                );
            }
        }
    }
}

/// Runs ffmpeg on `url` for `secs` seconds with `output` options (ending in
/// `-`), asserts it succeeded, and returns what it wrote.
fn ffmpeg_decode(url: &str, transport: &str, secs: f64, output: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-rtsp_transport",
            transport,
        ])
        .args(["-timeout", "5000000", "-i", url, "-t", &secs.to_string()])
        .args(output)
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {url} ({transport}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pulls `secs` seconds with ffmpeg (transport "tcp" or "udp") and decodes to
/// mono S16 at 48 kHz (whatever the stream's format).
pub fn ffmpeg_pull(url: &str, transport: &str, secs: f64) -> Pcm {
    let out = ffmpeg_decode(
        url,
        transport,
        secs,
        &["-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
    );
    Pcm::from_bytes(&out)
}

/// Pulls `secs` seconds with ffmpeg over TCP and decodes without forcing a
/// format: the rate and channel count are those of the stream, read from the
/// WAV header ffmpeg writes.
pub fn ffmpeg_pull_native(url: &str, secs: f64) -> Pcm {
    let out = ffmpeg_decode(url, "tcp", secs, &["-c:a", "pcm_s16le", "-f", "wav", "-"]);
    let (rate, channels, data) =
        parse_wav(&out).unwrap_or_else(|e| panic!("ffmpeg's WAV from {url}: {e}"));
    Pcm(hark_audiocheck::Pcm::from_s16le(data, rate, channels))
}

/// (rate, channels, sample bytes) of a 16-bit PCM WAV; a streamed WAV's data
/// chunk has no usable size, so the data is everything after its header.
pub fn parse_wav(b: &[u8]) -> Result<(u32, u16, &[u8]), String> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut i = 12;
    let mut fmt = None;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        let body = i + 8;
        if id == b"fmt " {
            let f = b.get(body..body + 16).ok_or("short fmt chunk")?;
            let mut format = u16::from_le_bytes([f[0], f[1]]);
            if format == 0xFFFE {
                // WAVE_FORMAT_EXTENSIBLE (ffmpeg's choice above 48 kHz or two
                // channels): the format code opens the sub-format GUID.
                let g = b
                    .get(body + 24..body + 26)
                    .ok_or("short extensible fmt chunk")?;
                format = u16::from_le_bytes([g[0], g[1]]);
            }
            let channels = u16::from_le_bytes([f[2], f[3]]);
            let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
            let bits = u16::from_le_bytes([f[14], f[15]]);
            if format != 1 || bits != 16 {
                return Err(format!("format {format}, {bits} bits; want PCM 16"));
            }
            fmt = Some((rate, channels));
        } else if id == b"data" {
            let (rate, channels) = fmt.ok_or("data before fmt")?;
            return Ok((rate, channels, &b[body..]));
        }
        i = body + len + (len & 1);
    }
    Err("no data chunk".into())
}

/// The audio media of a stream's SDP (from a real DESCRIBE).
#[derive(Debug, PartialEq)]
pub struct SdpAudio {
    pub payload_type: u8,
    /// `a=rtpmap` encoding name, clock rate and channels (1 when not given).
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
}

pub fn describe_audio(url: &str) -> SdpAudio {
    let mut c = rtsp_client::Client::connect(url, Duration::from_secs(5)).unwrap();
    let r = c
        .request("DESCRIBE", url, &[("Accept", "application/sdp")])
        .unwrap();
    assert_eq!(r.status, 200, "DESCRIBE {url}");
    parse_sdp_audio(&r.body).unwrap_or_else(|e| panic!("SDP of {url}: {e}\n{}", r.body))
}

pub fn parse_sdp_audio(sdp: &str) -> Result<SdpAudio, String> {
    let mut lines = sdp.lines().map(str::trim_end);
    let m = lines
        .by_ref()
        .find(|l| l.starts_with("m=audio "))
        .ok_or("no m=audio line")?;
    let pt: u8 = m
        .split_whitespace()
        .nth(3)
        .and_then(|p| p.parse().ok())
        .ok_or("no payload type in m=audio")?;
    let (mut rtpmap, mut fmtp) = (None, String::new());
    for l in lines.take_while(|l| !l.starts_with("m=")) {
        if let Some(v) = l.strip_prefix(&format!("a=rtpmap:{pt} ")) {
            rtpmap = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix(&format!("a=fmtp:{pt} ")) {
            fmtp = v.to_string();
        }
    }
    let rtpmap = rtpmap.ok_or(format!("no a=rtpmap for payload type {pt}"))?;
    let mut parts = rtpmap.split('/');
    let encoding = parts.next().unwrap_or_default().to_string();
    let clock_rate = parts
        .next()
        .and_then(|r| r.parse().ok())
        .ok_or(format!("bad rtpmap {rtpmap:?}"))?;
    let channels = match parts.next() {
        Some(c) => c.parse().map_err(|_| format!("bad rtpmap {rtpmap:?}"))?,
        None => 1,
    };
    Ok(SdpAudio {
        payload_type: pt,
        encoding,
        clock_rate,
        channels,
        fmtp,
    })
}

/// Pulls about `secs` seconds with GStreamer's rtspsrc and decodes to PCM.
pub fn rtspsrc_pull(url: &str, secs: f64) -> Pcm {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.raw");
    let mut child = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "rtspsrc",
            &format!("location={url}"),
            "latency=100",
            "!",
            "decodebin",
            "!",
        ])
        .args(["audioconvert", "!", "audioresample", "!"])
        .args([
            "audio/x-raw,format=S16LE,channels=1,rate=48000",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gst-launch-1.0");
    // Until the file holds `secs` of audio (filesink writes what it decoded,
    // a buffer behind): a loaded machine may take longer to get there, which
    // is no fault of the server. Bounded, so a client that never gets audio fails.
    let want = (secs * RATE) as u64 * 2;
    let timeout = Duration::from_secs_f64(10.0 * secs + 10.0);
    let mut exited_early = None;
    let ((), took) = wait_for(timeout, &format!("{secs} s of audio from rtspsrc"), || {
        if let Some(s) = child.try_wait().unwrap() {
            exited_early = Some(s);
            return Ok(());
        }
        let have = std::fs::metadata(&file).map_or(0, |m| m.len());
        if have >= want {
            Ok(())
        } else {
            Err(format!("{have} of {want} bytes"))
        }
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        exited_early.is_none(),
        "rtspsrc client ended early ({exited_early:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("FIGURE rtspsrc: {secs} s of audio in {took:?}");
    Pcm::from_bytes(&std::fs::read(&file).unwrap_or_default())
}

/// An ffmpeg RTSP client that plays until told to stop, decoding to mono S16LE
/// at 48 kHz as it goes: for "a client for the whole episode", however long a
/// loaded machine makes the episode, and for "the client is playing" as a
/// condition (audio decoded) rather than a guess (a sleep).
pub struct FfmpegClient {
    child: Child,
    audio: Arc<Mutex<Vec<u8>>>,
    errors: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    what: String,
}

impl FfmpegClient {
    /// Starts ffmpeg on `url` over `transport` ("tcp" or "udp").
    pub fn start(url: &str, transport: &str) -> FfmpegClient {
        let mut child = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-rtsp_transport",
                transport,
                "-i",
                url,
            ])
            .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ffmpeg");
        let audio: Arc<Mutex<Vec<u8>>> = Arc::default();
        let errors: Arc<Mutex<String>> = Arc::default();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (a, e) = (audio.clone(), errors.clone());
        let readers = vec![
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    a.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }),
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                e.lock().unwrap().push_str(&text);
            }),
        ];
        FfmpegClient {
            child,
            audio,
            errors,
            readers,
            what: format!("ffmpeg {url} ({transport})"),
        }
    }

    /// Seconds of audio decoded so far.
    pub fn seconds(&self) -> f64 {
        (self.audio.lock().unwrap().len() / 2) as f64 / RATE
    }

    /// Waits until at least `secs` of audio have been decoded (`timeout` at
    /// most); fails at once if the client ends first. Returns how long it took.
    pub fn wait_audio(&mut self, secs: f64, timeout: Duration) -> Duration {
        let what = format!("{secs} s of audio decoded by {}", self.what);
        let ((), took) = wait_for(timeout, &what, || {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "{} ended ({s}) after {:.2} s of audio: {}",
                    self.what,
                    self.seconds(),
                    self.errors.lock().unwrap()
                );
            }
            let have = self.seconds();
            if have >= secs {
                Ok(())
            } else {
                Err(format!("{have:.2} s"))
            }
        });
        took
    }

    /// The exit status if the client has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (at most `timeout`) for the client to end on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// Asserts the client is still playing, stops it (SIGINT: ffmpeg flushes
    /// what it decoded) and returns everything it decoded.
    pub fn stop(mut self) -> Pcm {
        if let Some(s) = self.try_wait() {
            panic!(
                "{} ended early ({s}) after {:.2} s of audio: {}",
                self.what,
                self.seconds(),
                self.errors.lock().unwrap()
            );
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let bytes = std::mem::take(&mut *self.audio.lock().unwrap());
        Pcm::from_bytes(&bytes)
    }
}

impl Drop for FfmpegClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ALSA userspace capture device backed by a FIFO, fed in real time by a thread
/// writing a sine tone (mono S16LE 48 kHz). `pause` stops the writer (a stall).
///
/// alsa-lib's `file` plugin has no clock of its own: its `null` slave is always
/// ready, and a short read from the FIFO is padded with the slave's silence. So the
/// reader must never find a partial chunk: the `plug` wrapper fixes the format the
/// FIFO carries, and the writer writes whole 20 ms chunks (harkd's ALSA period,
/// `latency-time`), each one atomic (under PIPE_BUF), paced by the wall clock.
pub struct FifoMic {
    pub dir: tempfile::TempDir,
    pub pause: Arc<AtomicBool>,
    /// Writes faint noise (about -80 dBFS peak) instead of the tone: audio
    /// flows, below any silence threshold, its level a little different in
    /// every reading (as a quiet room's is).
    pub mute: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The writer is not writing and will not before it looks at `pause` again.
    idle: Arc<AtomicBool>,
    /// When the writer's last chunk went into the FIFO.
    last_write: Arc<Mutex<Option<Instant>>>,
    /// Each time the writer itself fell behind its pace by more than
    /// [`SLIP`]: when it caught up, and how far behind it had been (time
    /// blocked writing into a full FIFO, the reader's stall, not counted).
    slips: Arc<Mutex<Vec<(Instant, Duration)>>>,
    pub alsa_config_path: String,
    pub device: String,
}

impl FifoMic {
    pub fn new(freq: f64, amplitude: f64) -> FifoMic {
        Self::named("fifomic", freq, amplitude)
    }

    /// As `new`, with its ALSA PCM called `name` (several in one process: give
    /// ALSA_CONFIG_PATH every mic's file, see `alsa_config_paths`).
    pub fn named(name: &str, freq: f64, amplitude: f64) -> FifoMic {
        Self::paced(name, freq, amplitude, RATE)
    }

    /// As `named`, its writer paced at `pace` frames a second of the wall
    /// clock: a microphone whose crystal runs fast or slow (the tone is still
    /// computed at 48 kHz, as the device believes it runs).
    pub fn paced(name: &str, freq: f64, amplitude: f64, pace: f64) -> FifoMic {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("mic.fifo");
        let ok = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
        let conf = dir.path().join("asound.conf");
        std::fs::write(
            &conf,
            format!(
                "pcm.{name}_file {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n}}\n\
                 pcm.{name} {{\n  type plug\n  slave {{ pcm \"{name}_file\" format S16_LE channels 1 rate 48000 }}\n}}\n",
                fifo.display()
            ),
        )
        .unwrap();
        let pause = Arc::new(AtomicBool::new(false));
        let mute = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(true));
        let last_write = Arc::default();
        let slips = Arc::default();
        spawn_writer(
            fifo,
            freq,
            amplitude,
            pace,
            Writer {
                pause: pause.clone(),
                mute: mute.clone(),
                stop: stop.clone(),
                idle: idle.clone(),
                last_write: Arc::clone(&last_write),
                slips: Arc::clone(&slips),
            },
        );
        FifoMic {
            alsa_config_path: format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
            device: name.into(),
            dir,
            pause,
            mute,
            stop,
            idle,
            last_write,
            slips,
        }
    }

    /// The times the writer (a thread of the test, at the scheduler's mercy)
    /// fell behind its own pace by more than [`SLIP`], with how far: a stall
    /// of the source, not of harkd, which a loaded machine can cause.
    pub fn slips(&self) -> Vec<(Instant, Duration)> {
        self.slips.lock().unwrap().clone()
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.path().join("mic.fifo")
    }

    /// Pauses the writer (a stall) and waits until it has stopped writing;
    /// returns when its last chunk went in: the moment the audio stopped, not
    /// the moment the test asked (a loaded machine can delay either).
    pub fn pause_writing(&self) -> Instant {
        let asked = Instant::now();
        self.pause.store(true, Ordering::SeqCst);
        wait_until(Duration::from_secs(10), "the FIFO writer to stop", || {
            self.idle.load(Ordering::SeqCst)
        });
        self.last_write.lock().unwrap().unwrap_or(asked)
    }

    pub fn resume_writing(&self) {
        self.pause.store(false, Ordering::SeqCst);
    }

    /// With the writer paused: waits until a thread of process `pid` is
    /// blocked in a system call on the FIFO (a read with nothing left to read),
    /// from `/proc/PID/task/*/syscall`. The capture is then stuck, not merely
    /// behind.
    pub fn wait_reader_stuck(&self, pid: u32, timeout: Duration) -> Duration {
        assert!(
            self.pause.load(Ordering::SeqCst) && self.idle.load(Ordering::SeqCst),
            "pause the writer first"
        );
        let fifo = self.fifo();
        wait_for(timeout, "a harkd thread blocked reading the FIFO", || {
            let fds: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == fifo))
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            if fds.is_empty() {
                return Err("harkd does not have the FIFO open".into());
            }
            let tasks =
                std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
            for t in tasks.filter_map(Result::ok) {
                // "NR arg0 arg1 ... sp pc" while blocked in a call; "running" else.
                let sc = match std::fs::read_to_string(t.path().join("syscall")) {
                    Ok(sc) => sc,
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        return Err(format!("{}: {e}", t.path().display()));
                    }
                    Err(_) => continue, // the thread ended
                };
                let arg0 = sc
                    .split_whitespace()
                    .nth(1)
                    .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
                if arg0.is_some_and(|fd| fds.contains(&fd)) {
                    return Ok(());
                }
            }
            Err(format!("FIFO fds {fds:?}, no thread blocked on one"))
        })
        .1
    }
}

impl Drop for FifoMic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the writer thread shares with its `FifoMic`.
struct Writer {
    pause: Arc<AtomicBool>,
    mute: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    last_write: Arc<Mutex<Option<Instant>>>,
    slips: Arc<Mutex<Vec<(Instant, Duration)>>>,
}

/// How far behind its pace the writer may fall before it counts the lateness
/// as a slip (it normally writes within a few ms of each chunk's due time).
pub const SLIP: Duration = Duration::from_millis(15);

fn spawn_writer(fifo: PathBuf, freq: f64, amplitude: f64, pace: f64, w: Writer) {
    let Writer {
        pause,
        mute,
        stop,
        idle,
        last_write,
        slips,
    } = w;
    std::thread::spawn(move || {
        const CHUNK: usize = 960; // 20 ms = harkd's ALSA period
        let mut phase = 0u64;
        let mut noise = 0x2545_f491_4f6c_dd1du64;
        while !stop.load(Ordering::SeqCst) {
            // Blocks until a reader (the capture pipeline) opens the FIFO.
            idle.store(true, Ordering::SeqCst);
            let Ok(mut f) = open_for_write(&fifo, &stop) else {
                return;
            };
            let start = Instant::now();
            let mut sent = 0u64;
            // The furthest behind its pace the writer itself got in the run of
            // writes being caught up, and how long those writes were held up
            // by a full FIFO (the reader's stall, not the writer's: left out).
            let mut behind = Duration::ZERO;
            let mut blocked = Duration::ZERO;
            loop {
                // Not idle until `pause` is seen set: a write happens only after
                // this store and a look at `pause`, so `idle` seen true after
                // pausing means no write until the pause ends.
                idle.store(false, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if pause.load(Ordering::SeqCst) {
                    idle.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    // Real time keeps running while paused: resume without a burst.
                    sent = (start.elapsed().as_secs_f64() * pace) as u64;
                    (behind, blocked) = (Duration::ZERO, Duration::ZERO);
                    continue;
                }
                let due = (start.elapsed().as_secs_f64() * pace) as u64;
                if sent > due {
                    if behind > SLIP {
                        slips.lock().unwrap().push((Instant::now(), behind));
                    }
                    (behind, blocked) = (Duration::ZERO, Duration::ZERO);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let late = Duration::from_secs_f64((due - sent) as f64 / pace);
                behind = behind.max(late.saturating_sub(blocked));
                let mut buf = Vec::with_capacity(CHUNK * 2);
                let muted = mute.load(Ordering::SeqCst);
                for _ in 0..CHUNK {
                    let t = phase as f64 / RATE;
                    let v = if muted {
                        // A small LCG: -3..=3, different every chunk.
                        noise = noise
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        ((noise >> 33) % 7) as i16 - 3
                    } else {
                        (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
                    };
                    buf.extend_from_slice(&v.to_le_bytes());
                    phase += 1;
                }
                // Taken before the write: the audio cannot reach the reader
                // before this instant, whatever the scheduler does next.
                let at = Instant::now();
                if f.write_all(&buf).is_err() {
                    break; // reader went away (pipeline restarted): reopen
                }
                blocked += at.elapsed();
                *last_write.lock().unwrap() = Some(at);
                sent += CHUNK as u64;
            }
        }
    });
}

fn open_for_write(fifo: &Path, _stop: &AtomicBool) -> std::io::Result<std::fs::File> {
    // Blocks until a reader opens the FIFO. A writer left blocked here when the
    // test ends is harmless: the FIFO is deleted with its directory.
    std::fs::OpenOptions::new().write(true).open(fifo)
}

/// Sends raw bytes and returns (status code, whole response text); status 0 when
/// the server closed (or reset) the connection without an answer. A server that
/// neither answers nor closes within 10 s fails the test: holding a connection
/// is not refusing it.
pub fn http_raw(port: u16, request: &[u8]) -> (u16, String) {
    let out = http_raw_bytes(port, request);
    let text = String::from_utf8_lossy(&out).into_owned();
    (status_code(&text), text)
}

/// The status code of an HTTP response's text; 0 when it has none.
pub fn status_code(text: &str) -> u16 {
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// As [`http_raw`], the whole response as bytes (a binary body intact).
pub fn http_raw_bytes(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may close before reading everything (a refusal): not an error.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!(
                "port {port}: no answer and no close within 10 s (got {} bytes)",
                out.len()
            )
        }
        _ => {}
    }
    out
}

pub fn http_get_full(port: u16, path: &str) -> (u16, String) {
    http_raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A stream's capture restarts as the status endpoint counts them (the counter
/// users see), or None when the stream is not listed.
pub fn restarts(h: &Harkd, stream: &str) -> Option<u64> {
    let status: Value = serde_json::from_str(&http_get(h.http_port, "/api/v1/status")).ok()?;
    status["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == stream)?["restarts"]
        .as_u64()
}

pub fn http_body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// GET `path` on the HTTP endpoint and return the body.
pub fn http_get(port: u16, path: &str) -> String {
    let (_, resp) = http_get_full(port, path);
    http_body(&resp).to_string()
}

/// Whether the tests run as root (a tmpfs needs it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
