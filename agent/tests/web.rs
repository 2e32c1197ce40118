//! The status page and WHEP, end to end: a real harkd, Debian's headless
//! Chromium driven by Selenium (`browser.py`) for the page and listening, and
//! plain HTTP for the protocol's refusals and the credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::fixture;
use common::{FifoMic, Harkd, http_body, http_get, http_raw, is_event, msg, wait_until};
use serde_json::Value;

const OFFER: &str = include_str!("fixtures/whep/chrome-offer.sdp");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser.py");

/// The venv's python (scripts/browser-venv.sh makes it; `make test` runs it).
fn python() -> String {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/browser-venv.sh"
    ))
    .stderr(Stdio::inherit())
    .output()
    .expect("scripts/browser-venv.sh");
    assert!(out.status.success(), "scripts/browser-venv.sh failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Chromium, harkd and WebRTC at once are a heavy load for a 2-core machine:
/// the tests that drive a browser take turns (the others run beside them).
static BROWSER_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn browser_turn() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed holding it leaves nothing to repair.
    BROWSER_TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// `browser.py` running, its JSON lines arriving on a channel.
struct Browser {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Browser {
    fn start(args: &[&str]) -> Browser {
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: killing it kills chromedriver and
            // Chromium with it (a browser that vanishes).
            .process_group(0)
            .spawn()
            .expect("python");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("browser.py: {line}"),
                }
            }
        });
        Browser { child, lines }
    }

    /// The next line whose `event` is `event`.
    fn wait(&self, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(_) => {}
                Err(_) => panic!("browser.py: no {event:?} within {timeout:?}"),
            }
        }
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our child's process group; no memory is touched.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

fn status(h: &Harkd) -> Value {
    serde_json::from_str(&http_get(h.http_port, "/api/v1/status")).unwrap()
}

fn clients(h: &Harkd, stream: &str) -> u64 {
    status(h)["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stream)
        .map_or(0, |s| s["clients"].as_u64().unwrap())
}

fn page_url(h: &Harkd) -> String {
    format!("http://127.0.0.1:{}/", h.http_port)
}

/// One HTTP/1.1 request, the connection closed after it; `headers` are whole
/// lines ("Name: value\r\n").
fn request_text(method: &str, path: &str, headers: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request to the endpoint: (status, whole response).
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    http_raw(port, request_text(method, path, headers, body).as_bytes())
}

fn offer(port: u16, stream: &str, sdp: &str) -> (u16, String) {
    request(
        port,
        "POST",
        &format!("/{stream}/whep"),
        "Content-Type: application/sdp\r\n",
        sdp,
    )
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const TONES: &str = "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n\n\
    [[stream]]\nname = \"test-tone\"\nsource = \"tone\"\ntone_hz = 440.0\ntone_dbfs = -20.0\ncodec = \"opus\"\n\n\
    [[stream]]\nname = \"raw-tone\"\nsource = \"tone\"\ntone_hz = 660.0\ntone_dbfs = -20.0\ncodec = \"l16\"\n";

/// harkd serving both tones, once both deliver audio.
fn tones(config: &str) -> Harkd {
    let h = Harkd::start(config);
    for s in ["test-tone", "raw-tone"] {
        h.wait_log(Duration::from_secs(20), |v| {
            is_event(v, "audio is flowing", s)
        });
    }
    h
}

/// The README's picture: the test tone and two USB mics (fixture devices on
/// FIFO-fed ALSA PCMs), one sent as Opus, one as L16, and tones as AAC and
/// MP3 (the last three listened to through an Opus branch each). The page lists them with their identities, its meters follow
/// a mic muted and unmuted, and listening in the browser receives audio that
/// is not silent (WebRTC's own counters and the page's analyser).
#[test]
fn the_page_lists_the_mics_follows_their_levels_and_plays_them_in_a_real_browser() {
    let _turn = browser_turn();
    let tree = tempfile::tempdir().unwrap();
    for dir in ["sys/class/sound", "proc/asound", "state"] {
        std::fs::create_dir_all(tree.path().join(dir)).unwrap();
    }
    let field = FifoMic::named("hark_mic1", 700.0, 0.25);
    let desk = FifoMic::named("hark_mic2", 900.0, 0.25);
    fixture::usb_card(
        tree.path(),
        &fixture::UsbCard {
            index: 1,
            card_id: "Mic",
            port: "1-1",
            vendor: "1209",
            product_id: "4b41",
            serial: Some(b"HIL-A1B2"),
            manufacturer: Some(b"hark"),
            product: Some(b"Field Mic"),
            stream0: Some(fixture::CM108_STREAM0),
            capture: true,
        },
    );
    fixture::usb_card(
        tree.path(),
        &fixture::UsbCard {
            index: 2,
            card_id: "Device",
            port: "1-2",
            vendor: "0d8c",
            product_id: "0014",
            serial: None,
            manufacturer: Some(b"C-Media Electronics Inc."),
            product: Some(b"USB Audio Device"),
            stream0: Some(fixture::CM108_STREAM0),
            capture: true,
        },
    );
    let alsa = [&field, &desk]
        .iter()
        .map(|m| m.alsa_config_path.split_once(':').unwrap().1.to_string())
        .fold("/usr/share/alsa/alsa.conf".to_string(), |a, c| a + ":" + &c);
    let config = format!(
        "{TONES}\n[[stream]]\nname = \"aac-tone\"\nsource = \"tone\"\ntone_hz = 550.0\ncodec = \"aac\"\n\n\
         [[stream]]\nname = \"mp3-tone\"\nsource = \"tone\"\ntone_hz = 770.0\ncodec = \"mp3\"\n\n\
         [devices]\nstate_dir = \"{}\"\nalsa_device = \"hark_mic{{card}}\"\n\n\
         [[device]]\nname = \"field\"\nserial = \"HIL-A1B2\"\n\n\
         [[device]]\nname = \"desk\"\nvendor_product = \"0d8c:0014\"\ncodec = \"l16\"\n",
        tree.path().join("state").display()
    );
    let (sys, proc) = (tree.path().join("sys"), tree.path().join("proc"));
    let h = Harkd::start_with_args(
        &config,
        &[("ALSA_CONFIG_PATH", alsa.as_str())],
        &[
            ("--sysfs-root", sys.to_str().unwrap()),
            ("--procfs-root", proc.to_str().unwrap()),
        ],
    );
    for s in ["field", "desk", "test-tone", "aac-tone", "mp3-tone"] {
        h.wait_log(Duration::from_secs(20), |v| {
            is_event(v, "audio is flowing", s)
        });
    }
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-page.png");
    let mut b = Browser::start(&[
        "page",
        &page_url(&h),
        shot.to_str().unwrap(),
        "test-tone",
        "field",
        "desk",
        "aac-tone",
        "mp3-tone",
    ]);
    let listed = b.wait("listed", Duration::from_secs(60));
    // The meters are being sampled now, for 4 s: the field mic goes quiet for
    // about 2 of them.
    std::thread::sleep(Duration::from_millis(800));
    field.mute.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2000));
    field
        .mute
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let done = b.wait("done", Duration::from_secs(120));
    b.kill();
    eprintln!("browser: {done}");

    let streams: Vec<&str> = listed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in [
        "test-tone",
        "raw-tone",
        "aac-tone",
        "mp3-tone",
        "field",
        "desk",
    ] {
        assert!(streams.contains(&s), "{s} not listed: {streams:?}");
    }
    let devices = listed["devices"].to_string();
    for text in [
        "Field Mic",
        "serial HIL-A1B2",
        "C-Media",
        "port 1-2",
        "0d8c:0014",
    ] {
        assert!(
            devices.contains(text),
            "{text} not in the devices: {devices}"
        );
    }
    // Live: an event for every level reading (2-5 a second here).
    assert!(done["events"].as_u64().unwrap() >= 5, "{done}");
    let meter = |s: &str| -> Vec<f64> {
        done["meters"][s]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect()
    };
    let field_levels = meter("field");
    let (lo, hi) = field_levels
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(
        hi > -25.0 && lo < -60.0,
        "the field mic's meter did not follow: {field_levels:?}"
    );
    let tone = meter("test-tone");
    assert!(
        tone.len() >= 10 && tone.iter().all(|v| (-26.0..-20.0).contains(v)),
        "{tone:?}"
    );

    for s in ["test-tone", "field", "desk", "aac-tone", "mp3-tone"] {
        let l = &done["listened"][s];
        let (first, second) = (&l["first"], &l["second"]);
        assert_eq!(second["state"], "connected", "{s}: {l}");
        let packets = second["packets"].as_u64().unwrap() - first["packets"].as_u64().unwrap();
        // 2 s of packets: the Opus streams' own 60 ms frames (frame_ms's
        // default, sent as encoded), the others' 20 ms from the listener's encoder.
        let frame_ms = if matches!(s, "test-tone" | "field") {
            60
        } else {
            20
        };
        assert!(
            packets * frame_ms >= 1700,
            "{s}: {packets} packets of {frame_ms} ms in 2 s: {l}"
        );
        let energy = second["energy"].as_f64().unwrap() - first["energy"].as_f64().unwrap();
        // totalAudioEnergy grows by the mean square over the time: a -15..-23
        // dBFS tone for 2 s gives 0.01-0.06; silence gives nothing.
        assert!(energy > 0.005, "{s}: energy {energy} in 2 s (silent?): {l}");
        let rms = second["rms"].as_f64().unwrap_or(-200.0);
        assert!(
            rms > -30.0,
            "{s}: the page's analyser hears {rms} dBFS: {l}"
        );
        eprintln!(
            "FIGURE web: {s} Listen -> {} packets in {:.2} s",
            first["packets"],
            first["took_s"].as_f64().unwrap()
        );
    }
    assert_eq!(done["errors"], serde_json::json!([]), "{done}");
    // Stop sends DELETE: no listener left behind.
    wait_until(Duration::from_secs(5), "listeners gone", || {
        ["test-tone", "field", "desk", "aac-tone", "mp3-tone"]
            .iter()
            .all(|s| clients(&h, s) == 0)
    });
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot"
    );
}

/// Fifty sessions opened and closed by a real browser, half on the Opus
/// stream (sent as encoded), half on the L16 one (an Opus branch each):
/// afterwards no session, thread or file descriptor is left, and memory is
/// back within a bound.
#[test]
fn fifty_browser_sessions_leave_no_webrtcbin_behind() {
    let _turn = browser_turn();
    let h = tones(TONES);
    // A first session loads webrtcbin's plugins and makes its certificate:
    // those stay, and are not a leak.
    let mut warm = Browser::start(&["churn", &page_url(&h), "raw-tone", "2"]);
    warm.wait("done", Duration::from_secs(90));
    warm.kill();
    wait_until(Duration::from_secs(5), "warm-up gone", || {
        clients(&h, "raw-tone") == 0
    });
    let (fds0, threads0) = h.steady_counts(Duration::from_secs(3), Duration::from_secs(30));
    let rss0 = h.rss_kib();
    let mut took = Vec::new();
    for stream in ["test-tone", "raw-tone"] {
        let mut b = Browser::start(&["churn", &page_url(&h), stream, "25"]);
        let done = b.wait("done", Duration::from_secs(300));
        b.kill();
        assert_eq!(done["sessions"], 25, "{done}");
        assert_eq!(done["errors"], serde_json::json!([]), "{done}");
        took.extend(
            done["took"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_f64),
        );
    }
    wait_until(Duration::from_secs(5), "every session ended", || {
        clients(&h, "test-tone") + clients(&h, "raw-tone") == 0
    });
    let (fds1, threads1) = h.steady_counts(Duration::from_secs(3), Duration::from_secs(30));
    let rss1 = h.rss_kib();
    took.sort_by(f64::total_cmp);
    eprintln!(
        "FIGURE web churn: 50 sessions; Listen -> audio p50 {:.2} s, max {:.2} s; \
         fds {fds0} -> {fds1}, threads {threads0} -> {threads1}, RSS {rss0} -> {rss1} KiB",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert_eq!(fds1, fds0, "file descriptors left behind");
    assert!(
        threads1 <= threads0,
        "threads left behind: {threads0} -> {threads1}"
    );
    assert!(
        rss1 < rss0 + 2 * 1024,
        "RSS grew {} KiB over 50 sessions",
        rss1 - rss0
    );
}

/// A browser listening for 16 s is kept; killed (no DELETE, no goodbye), its
/// session ends once its RTCP reports stop, within seconds.
#[test]
fn a_browser_that_vanishes_is_cleaned_up_within_seconds() {
    let _turn = browser_turn();
    let h = tones(TONES);
    let mut b = Browser::start(&["hold", &page_url(&h), "test-tone"]);
    b.wait("listening", Duration::from_secs(60));
    // A browser that is there is kept, well past the quiet limit: its RTCP
    // reports count.
    std::thread::sleep(Duration::from_secs(16));
    assert_eq!(clients(&h, "test-tone"), 1, "a live listener was ended");
    let mark = h.mark();
    let killed = Instant::now();
    b.kill();
    let took = wait_until(Duration::from_secs(20), "the listener ended", || {
        clients(&h, "test-tone") == 0
    });
    eprintln!("FIGURE web: a vanished browser's session ended {took:?} after the kill");
    let gone = h.wait_log_after(mark, Duration::from_secs(1), |v| {
        msg(v) == "WHEP listener gone"
    });
    assert_eq!(gone["why"], "no RTCP from the browser", "{gone}");
    // Not before its browser went quiet: 12 s after its last report, which
    // came at most 7.5 s before the kill (Chrome's audio RTCP interval).
    assert!(killed.elapsed() > Duration::from_secs(4), "{took:?}");
}

/// The protocol's answers without a browser: a good offer gets 201 with an
/// answer and its resource, DELETE ends it, and each wrong request gets its
/// own clear refusal; sessions whose browser never connects are ended.
#[test]
fn whep_answers_good_offers_and_refuses_wrong_ones_clearly() {
    let config = TONES.replace(
        "[rtsp]\n",
        "[http]\nlisten = \"127.0.0.1:@HTTP@\"\nmax_listeners = 2\n\n[rtsp]\n",
    );
    let h = tones(&config);
    let port = h.http_port;
    let started = Instant::now();
    let (code, resp) = offer(port, "test-tone", OFFER);
    eprintln!("FIGURE web: offer -> answer {:?}", started.elapsed());
    assert_eq!(code, 201, "{resp}");
    assert_eq!(header(&resp, "content-type"), Some("application/sdp"));
    let location = header(&resp, "location").unwrap().to_string();
    assert!(location.starts_with("/test-tone/whep/"), "{location}");
    let answer = http_body(&resp);
    for line in [
        "m=audio",
        "a=sendonly",
        "a=rtpmap:111 OPUS/48000/2",
        "a=candidate:",
        "a=fingerprint:",
        "a=setup:",
    ] {
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&line.to_ascii_lowercase()),
            "{line} not in\n{answer}"
        );
    }
    assert_eq!(clients(&h, "test-tone"), 1);
    let (code, _) = offer(port, "raw-tone", OFFER);
    assert_eq!(code, 201);
    // http.max_listeners = 2.
    let (code, resp) = offer(port, "test-tone", OFFER);
    assert_eq!(code, 503, "{resp}");
    assert_eq!(header(&resp, "retry-after"), Some("2"));
    assert!(
        http_body(&resp).contains("2 browsers are listening already"),
        "{resp}"
    );

    let cases: &[(&str, &str, &str, String, u16, &str)] = &[
        (
            "POST",
            "/nope/whep",
            "Content-Type: application/sdp\r\n",
            OFFER.into(),
            404,
            "no stream named nope",
        ),
        (
            "POST",
            "/test-tone/whep",
            "Content-Type: text/plain\r\n",
            OFFER.into(),
            415,
            "application/sdp",
        ),
        (
            "POST",
            "/test-tone/whep",
            "Content-Type: application/sdp\r\n",
            "hello".into(),
            400,
            "must begin with v=0",
        ),
        (
            "POST",
            "/test-tone/whep",
            "Content-Type: application/sdp\r\n",
            OFFER.replace("m=audio", "m=video"),
            400,
            "no audio m-line",
        ),
        (
            "POST",
            "/test-tone/whep",
            "Content-Type: application/sdp\r\n",
            OFFER.replace("a=rtpmap:111 opus", "a=rtpmap:111 speex"),
            400,
            "does not include Opus",
        ),
        (
            "POST",
            "/test-tone/whep",
            "Content-Type: application/sdp\r\n",
            "v=0\r\n".repeat(20_000),
            413,
            "at most 65536 bytes",
        ),
        (
            "GET",
            "/test-tone/whep",
            "",
            String::new(),
            405,
            "method not allowed",
        ),
        (
            "PATCH",
            &location,
            "Content-Type: application/trickle-ice-sdpfrag\r\n",
            "a=end-of-candidates\r\n".into(),
            405,
            "method not allowed",
        ),
        (
            "DELETE",
            &location.replace("test-tone", "raw-tone"),
            "",
            String::new(),
            404,
            "no such session",
        ),
        (
            "DELETE",
            "/test-tone/whep/0123456789abcdef",
            "",
            String::new(),
            404,
            "no such session",
        ),
    ];
    for (method, path, headers, body, want, says) in cases {
        let (code, resp) = request(port, method, path, headers, body);
        assert_eq!(code, *want, "{method} {path}: {resp}");
        assert!(http_body(&resp).contains(says), "{method} {path}: {resp}");
    }
    let (code, resp) = request(port, "DELETE", &location, "", "");
    assert_eq!(code, 200, "{resp}");
    assert_eq!(clients(&h, "test-tone"), 0);
    let (code, _) = request(port, "DELETE", &location, "", "");
    assert_eq!(code, 404);
    // The raw-tone session's browser never connects: ended after 15 s.
    let took = wait_until(
        Duration::from_secs(25),
        "the unconnected session ended",
        || clients(&h, "raw-tone") == 0,
    );
    let gone = h.wait_log(Duration::from_secs(1), |v| msg(v) == "WHEP listener gone");
    assert_eq!(
        gone["why"], "the browser never connected",
        "{gone} after {took:?}"
    );
}

/// Malformed offers by the hundred: each a 400, none leaves a session, a
/// thread or a descriptor behind.
#[test]
fn malformed_offers_get_400_and_leave_nothing() {
    let h = tones(TONES);
    let (fds0, threads0) = h.steady_counts(Duration::from_secs(2), Duration::from_secs(20));
    let mut variants: Vec<String> = vec![
        String::new(),
        "v=0".into(),
        "v=0\r\nm=audio".into(),
        OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"),
        OFFER.replace("a=ice-pwd:", "a=x-ice-pwd:"),
        OFFER.replace("a=fingerprint:", "a=x:"),
        OFFER.replace("a=recvonly", "a=sendonly"),
        OFFER.replace("m=audio 9", "m=audio 0"),
        OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:300 opus/48000/2"),
        format!(
            "{OFFER}{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(20)
        ),
        "v=0\r\n\0\0\0\r\n".into(),
    ];
    // Every prefix of the offer cut at a line: most are not answerable.
    let lines: Vec<&str> = OFFER.split_inclusive('\n').collect();
    for n in 0..lines.len() {
        variants.push(lines[..n].concat());
    }
    let mut refused = 0;
    for round in 0..4 {
        for v in &variants {
            let (code, resp) = offer(h.http_port, "test-tone", v);
            match code {
                400 => refused += 1,
                // A prefix that is a whole offer (the rtpmap lines after Opus
                // cut off): a session, ended at once.
                201 => {
                    let loc = header(&resp, "location").unwrap().to_string();
                    assert_eq!(request(h.http_port, "DELETE", &loc, "", "").0, 200);
                }
                _ => panic!("round {round}: {code} for\n{v}\n{resp}"),
            }
        }
    }
    assert!(refused >= 4 * 30, "only {refused} refused");
    assert_eq!(clients(&h, "test-tone"), 0);
    let (fds1, threads1) = h.steady_counts(Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!((fds1, threads1), (fds0, threads0), "fds, threads");
}

/// An `Authorization: Basic` header line, encoded by coreutils' base64 (not
/// by harkd's own encoder, which is what is under test).
fn basic(user: &str, password: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64 (coreutils)");
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}").as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    format!(
        "Authorization: Basic {}\r\n",
        String::from_utf8(out.stdout).unwrap()
    )
}

/// What every path answers without credentials, with wrong ones and with the
/// right ones, when credentials are configured.
/// `whep`: what an offer with the right credentials gets (201, or 503 where
/// harkd has no address but loopback to offer).
fn check_credentials(
    send: impl Fn(&str, &str, &str, &str) -> (u16, String),
    good: &str,
    whep: u16,
) {
    let bad = basic("op", "wrong");
    let sdp = "Content-Type: application/sdp\r\n";
    let paths = [
        ("GET", "/", "", "", 200),
        ("GET", "/app.js", "", "", 200),
        ("GET", "/api/v1/status", "", "", 200),
        ("GET", "/metrics", "", "", 200),
        ("GET", "/api/v1/recordings", "", "", 200),
        ("POST", "/test-tone/whep", sdp, OFFER, whep),
    ];
    for (method, path, headers, body, ok) in paths {
        let ok: u16 = ok;
        for creds in ["", bad.as_str()] {
            let (code, resp) = send(method, path, &format!("{headers}{creds}"), body);
            assert_eq!(code, 401, "{method} {path} with {creds:?}: {resp}");
            assert_eq!(
                header(&resp, "www-authenticate"),
                Some("Basic realm=\"hark\", charset=\"UTF-8\"")
            );
        }
        let (code, resp) = send(method, path, &format!("{headers}{good}"), body);
        assert_eq!(code, ok, "{method} {path}: {resp}");
    }
    // Health checks need no credentials.
    assert_eq!(send("GET", "/healthz", "", "").0, 200);
}

#[test]
fn configured_credentials_are_asked_of_everything_but_healthz() {
    let config = TONES.replace(
        "[rtsp]\n",
        "[http]\nlisten = \"127.0.0.1:@HTTP@\"\n[http.auth]\nuser = \"op\"\npassword = \"s3cret pass\"\n\n[rtsp]\n",
    );
    let h = tones(&config);
    let port = h.http_port;
    check_credentials(
        |m, p, hd, b| request(port, m, p, hd, b),
        &basic("op", "s3cret pass"),
        201,
    );
    // The event stream too (its first event comes at once when allowed).
    let (code, _) = request(port, "GET", "/api/v1/events", "", "");
    assert_eq!(code, 401);
}

/// harkd listening on a non-loopback address (10.203.0.1, in a network
/// namespace of the test's own): with no [http.auth], the RTSP credentials
/// are asked for.
#[test]
fn beyond_loopback_the_endpoint_asks_for_the_rtsp_credentials() {
    if !common::is_root() {
        eprintln!("SKIPPED: a network namespace needs root");
        return;
    }
    let addr = "10.203.0.1";
    let config = TONES.replace(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n",
        &format!(
            "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n[rtsp.auth]\nuser = \"mic\"\npassword = \"pw-rtsp\"\n\n\
             [http]\nlisten = \"{addr}:@HTTP@\"\nallow_non_loopback = true\n"
        ),
    );
    let setup = format!("ip link set lo up && ip addr add {addr}/32 dev lo");
    let h = Harkd::start_wrapped(
        &[
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            &format!("{setup} && exec \"$0\" \"$@\""),
        ],
        &config,
    );
    let netns = format!("/proc/{}/ns/net", h.pid());
    let port = h.http_port;
    let send = |method: &str, path: &str, headers: &str, body: &str| -> (u16, String) {
        let req = request_text(method, path, headers, body);
        let script = "import socket,sys\ns=socket.create_connection((sys.argv[1],int(sys.argv[2])),10)\n\
                      s.sendall(sys.stdin.buffer.read())\nout=b''\nwhile True:\n d=s.recv(65536)\n if not d: break\n out+=d\n\
                      sys.stdout.buffer.write(out)\n";
        let mut c = Command::new("nsenter")
            .args([
                &format!("--net={netns}"),
                "python3",
                "-c",
                script,
                addr,
                &port.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(req.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (common::status_code(&text), text)
    };
    // Only lo is up in the namespace: no address to offer a browser, which
    // the offer is told (503) within seconds, not left waiting.
    let started = Instant::now();
    check_credentials(send, &basic("mic", "pw-rtsp"), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Recordings on the page: listed newest first with their size, downloaded
/// whole; a file harkd did not name, a link named like a segment and paths
/// that climb out of the directory are neither listed nor served.
#[test]
fn recordings_are_listed_and_downloaded_and_nothing_else_is_served() {
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[rtsp]\nbind = \"127.0.0.1\"\nport = @PORT@\n[devices]\nenabled = false\n\
         [recording]\ndirectory = \"{}\"\nmin_free_bytes = 0\n\n\
         [[stream]]\nname = \"tone\"\nsource = \"tone\"\ntone_hz = 440.0\ncodec = \"opus\"\nrecord = true\n",
        rec.path().display()
    );
    let h = Harkd::start(&config);
    let dir = rec.path().join("tone");
    wait_until(Duration::from_secs(10), "a segment with audio", || {
        std::fs::read_dir(&dir).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 4096))
        })
    });
    std::fs::write(dir.join("notes.txt"), "not a recording").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("tone_20200101T000000Z.opus")).unwrap();
    let list: Value = serde_json::from_str(&http_get(h.http_port, "/api/v1/recordings")).unwrap();
    let files = list.as_array().unwrap();
    assert_eq!(files.len(), 1, "{list}");
    let f = &files[0];
    assert_eq!(f["stream"], "tone");
    let name = f["file"].as_str().unwrap();
    assert!(name.starts_with("tone_") && name.ends_with(".opus"), "{f}");
    assert_eq!(f["url"], format!("/recordings/tone/{name}"));
    let (head, body) = get_bytes(h.http_port, f["url"].as_str().unwrap());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("audio/ogg"));
    let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
    let on_disk = std::fs::read(dir.join(name)).unwrap();
    // The segment grows; what was promised is its length when opened.
    assert!(
        len > 4096 && body.len() == len,
        "{len} promised, {} sent",
        body.len()
    );
    assert!(
        body.starts_with(b"OggS") && on_disk.starts_with(&body),
        "not the file's bytes"
    );
    for path in [
        "/recordings/tone/notes.txt",
        "/recordings/tone/tone_20200101T000000Z.opus",
        "/recordings/tone/..%2F..%2Fetc%2Fpasswd",
        "/recordings/../../etc/passwd",
        "/recordings/tone/../tone/x.opus",
        "/recordings/tone",
        "/recordings/.tone/tone_20200101T000000Z.opus",
    ] {
        let (code, resp) = common::http_get_full(h.http_port, path);
        assert_eq!(code, 404, "{path}: {resp}");
        assert!(!resp.contains("root:"), "{path}");
    }
}

/// GET `path`: the response head as text and the body as bytes.
fn get_bytes(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut out = common::http_raw_bytes(port, request_text("GET", path, "", "").as_bytes());
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = out.split_off(end);
    (String::from_utf8(out).unwrap(), body)
}
