//! Warm-up before READY: what the first device plugged in (and its first RTSP
//! client) would otherwise pay for alone.
//!
//! A GStreamer element type does its class set-up (pad templates, caps parsed
//! from strings, properties installed; for `rtpbin`, a dozen more types behind
//! its session pads) the first time one is made; an encoder, resampler or
//! payloader runs code no one has run yet the first time a buffer goes through
//! it; alsa-lib reads and parses its configuration files the first time a PCM
//! is opened. Measured in QEMU, the first device since start reached PLAY in
//! 0.54-0.79 s where every later one took 0.17-0.28 s, and harkd's log put the
//! difference between "capture started" and the first client. So, before READY:
//! each element a capture pipeline and an RTSP session use is made once; each
//! configured encoding's whole chain (converter, resampler, filters, meter,
//! encoder) and its payloader carry a few buffers of a test tone to their end;
//! and an `alsasrc` set up as a device's reads ALSA's `null` PCM (alsa-lib
//! parses its configuration files then). Then, with the server bound,
//! one RTSP session against it ([`warm_up_session`]): the server's first
//! session was worth about 110 ms of the first plug in QEMU.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::pipeline;
use crate::config::{Encoding, RtspConfig};

/// Elements every capture pipeline and every RTSP session uses.
const COMMON: &[&str] = &[
    "alsasrc",
    "audiotestsrc",
    "appsink",
    "appsrc",
    "queue",
    "funnel",
    "udpsrc",
    "udpsink",
    "multiudpsink",
];

/// How long one encoding's dry run may take (it is a few buffers).
const DRY_RUN_LIMIT: Duration = Duration::from_secs(5);

/// Warms up for `encodings` (the configured streams' and devices'); elements
/// or chains that fail here are skipped: the stream that needs them reports it
/// when it starts. Returns how long it took and how many chains ran to their end.
pub fn warm_up(encodings: &[Encoding]) -> (Duration, usize) {
    let t = Instant::now();
    for name in COMMON {
        if let Ok(e) = gst::ElementFactory::make(name).build() {
            let _ = e.set_state(gst::State::Null);
        }
    }
    if let Ok(rtpbin) = gst::ElementFactory::make("rtpbin").build() {
        // A session's pads make its rtpsession, demuxers and storage.
        if let Some(pad) = rtpbin.request_pad_simple("send_rtp_sink_0") {
            rtpbin.release_request_pad(&pad);
        }
        let _ = rtpbin.set_state(gst::State::Null);
    }
    let mut done: Vec<Encoding> = vec![];
    let mut ran = 0;
    for enc in encodings {
        if !done.contains(enc) {
            ran += usize::from(dry_run(enc));
            done.push(enc.clone());
        }
    }
    ran += usize::from(run_to_end(CAPTURE_DRY_RUN));
    (t.elapsed(), ran)
}

/// A device's source as its capture pipeline has it, on ALSA's `null` PCM (it
/// takes any format and never waits): the source's negotiation with ALSA, its
/// ring buffer and the thread that reads it run once before the first device.
const CAPTURE_DRY_RUN: &str = "alsasrc device=null buffer-time=500000 latency-time=20000 \
     num-buffers=5 ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! fakesink";

/// Runs `description` to its end (EOS) within [`DRY_RUN_LIMIT`]; whether it did.
fn run_to_end(description: &str) -> bool {
    let Ok(p) = gst::parse::launch(description) else {
        tracing::debug!(%description, "warm-up: cannot build");
        return false;
    };
    let mut reached_end = false;
    if p.set_state(gst::State::Playing).is_ok()
        && let Some(bus) = p.bus()
    {
        let limit = gst::ClockTime::from_nseconds(
            u64::try_from(DRY_RUN_LIMIT.as_nanos()).unwrap_or(u64::MAX),
        );
        let msg = bus.timed_pop_filtered(limit, &[gst::MessageType::Eos, gst::MessageType::Error]);
        reached_end = msg.is_some_and(|m| m.type_() == gst::MessageType::Eos);
    }
    let _ = p.set_state(gst::State::Null);
    reached_end
}

/// A few buffers of a test tone through the chain of `enc` and its payloader;
/// whether they reached its end.
fn dry_run(enc: &Encoding) -> bool {
    let chain = pipeline::chain_description(enc, 250_000_000);
    let Some((chain, _appsink)) = chain.rsplit_once(" ! appsink") else {
        return false;
    };
    let description = format!(
        "audiotestsrc num-buffers=10 ! audio/x-raw,rate=44100,channels=2 ! {chain} ! {} ! fakesink",
        pipeline::payloader_description(enc.codec)
    );
    run_to_end(&description)
}

/// The format the warm-up session plays: the first configured one (Opus when
/// nothing is configured), in Opus's shortest frames: the session waits for its
/// first packet, and the code it runs is the same for every frame length.
pub fn session_encoding(encodings: &[Encoding]) -> Encoding {
    let mut enc = encodings.first().cloned().unwrap_or(Encoding {
        codec: crate::config::Codec::Opus,
        bitrate: 64_000,
        sample_rate: 48_000,
        channels: 1,
        gain_db: 0.0,
        highpass_hz: 0.0,
        frame_ms: crate::config::FRAME_MS[0],
    });
    enc.frame_ms = crate::config::FRAME_MS[0];
    enc
}

/// One RTSP session against our own server before READY (the server's first
/// session costs the first real client about 110 ms in QEMU otherwise), then the
/// warm-up mount removed. A failure only costs that warm-up: it is logged.
pub fn warm_up_session(rtsp: &RtspConfig, port: u16, server: &gstreamer_rtsp_server::RTSPServer) {
    use gstreamer_rtsp_server::prelude::*;
    let ip = match rtsp.bind {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let basic = rtsp
        .auth
        .as_ref()
        .map(|a| gstreamer_rtsp_server::RTSPAuth::make_basic(&a.user, &a.password).to_string());
    let t = std::time::Instant::now();
    let result = rtsp_session(
        std::net::SocketAddr::new(ip, port),
        super::server::WARM_UP_PATH,
        basic.as_deref(),
        WARM_UP_SESSION_LIMIT,
    );
    let took_ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(_) => tracing::debug!(took_ms, "RTSP warmed up"),
        Err(e) => tracing::info!(took_ms, error = %e, "RTSP warm-up session failed"),
    }
    if let Some(mounts) = server.mount_points() {
        mounts.remove_factory(super::server::WARM_UP_PATH);
    }
}

/// How long the warm-up session may take.
const WARM_UP_SESSION_LIMIT: Duration = Duration::from_secs(3);

/// One RTSP session as a client makes it (DESCRIBE, SETUP over interleaved TCP,
/// PLAY, the first RTP packet, TEARDOWN) against `path` on our own server, so
/// that the process's first real client does not pay for the server's first
/// session (measured in QEMU: about 110 ms of the first plug's PLAY). `basic`:
/// the Basic credentials when the server asks for them. Returns the RTP channel's
/// first packet size.
pub fn rtsp_session(
    addr: std::net::SocketAddr,
    path: &str,
    basic: Option<&str>,
    timeout: Duration,
) -> Result<usize, String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let deadline = Instant::now() + timeout;
    let s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = s.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(s);
    let url = format!("rtsp://{addr}{path}");
    let auth = basic.map_or(String::new(), |b| format!("Authorization: Basic {b}\r\n"));
    let mut cseq = 0;
    let mut request = |method: &str, uri: &str, extra: &str| -> Result<(String, String), String> {
        cseq += 1;
        write!(
            writer,
            "{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n{auth}{extra}\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("{method}: connection closed"));
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        if !head.starts_with("RTSP/1.0 200") {
            return Err(format!("{method}: {}", head.lines().next().unwrap_or("")));
        }
        let length = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length.min(64 * 1024)];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok((head, String::from_utf8_lossy(&body).into_owned()))
    };
    let (head, sdp) = request("DESCRIBE", &url, "Accept: application/sdp\r\n")?;
    let control = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=control:"))
        .find(|c| *c != "*")
        .ok_or("no media control in the SDP")?;
    let track = if control.starts_with("rtsp://") {
        control.to_string()
    } else {
        let base = header(&head, "content-base").unwrap_or(&url);
        format!("{}/{control}", base.trim_end_matches('/'))
    };
    let (head, _) = request(
        "SETUP",
        &track,
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
    )?;
    let session = header(&head, "session")
        .and_then(|v| v.split(';').next())
        .ok_or("no Session header")?
        .to_string();
    request(
        "PLAY",
        &url,
        &format!("Session: {session}\r\nRange: npt=0-\r\n"),
    )?;
    // Interleaved frames: '$', channel, 16-bit length, data.
    let got = loop {
        if Instant::now() > deadline {
            return Err("no RTP packet in time".into());
        }
        let mut frame = [0u8; 4];
        reader.read_exact(&mut frame).map_err(|e| e.to_string())?;
        if frame[0] != b'$' {
            return Err("not an interleaved frame after PLAY".into());
        }
        let len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
        let mut data = vec![0u8; len];
        reader.read_exact(&mut data).map_err(|e| e.to_string())?;
        if frame[1] == 0 {
            break len;
        }
    };
    let _ = write!(
        reader.get_mut(),
        "TEARDOWN {url} RTSP/1.0\r\nCSeq: 9\r\n{}Session: {session}\r\n\r\n",
        basic.map_or(String::new(), |b| format!("Authorization: Basic {b}\r\n"))
    );
    Ok(got)
}

/// A header's value in a response head (names compared without case).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;

    fn enc(codec: Codec, sample_rate: u32, channels: u32, highpass_hz: f64) -> Encoding {
        Encoding {
            codec,
            bitrate: 64_000,
            sample_rate,
            channels,
            gain_db: -3.0,
            highpass_hz,
            frame_ms: 20,
        }
    }

    /// The warm-up session fails with a reason, never hangs, against a peer that
    /// is not an RTSP server.
    #[test]
    fn the_warm_up_session_fails_clearly_against_a_non_rtsp_peer() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        });
        let t = Instant::now();
        let err = rtsp_session(addr, "/.warm-up", None, Duration::from_secs(2)).unwrap_err();
        assert!(err.starts_with("DESCRIBE: HTTP/1.0 400"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
        peer.join().unwrap();
    }

    /// Each distinct encoding's chain and payloader carry the test tone to their
    /// end (a description that no longer builds, or a chain that errors, would
    /// warm nothing and show here); a repeated encoding runs once.
    #[test]
    fn every_configured_chain_runs_to_its_end() {
        gst::init().unwrap();
        let opus = enc(Codec::Opus, 48_000, 2, 0.0);
        let encodings = [opus.clone(), enc(Codec::L16, 16_000, 1, 100.0), opus];
        let (_, ran) = warm_up(&encodings);
        // Two distinct chains and the ALSA source's dry run.
        assert_eq!(ran, 3);
    }

    /// The warm-up session's tone media plays in every codec (it was refused
    /// for L16 once: no converter to big-endian samples).
    #[test]
    fn the_warm_up_media_plays_in_every_codec() {
        gst::init().unwrap();
        for codec in [Codec::Opus, Codec::L16, Codec::Aac, Codec::Mp3] {
            for (rate, channels) in [(48_000, 2), (16_000, 1)] {
                let media = pipeline::tone_media_description(&enc(codec, rate, channels, 0.0));
                let inner = media.trim_start_matches("( ").trim_end_matches(" )");
                let description = format!(
                    "{} ! fakesink",
                    inner.replacen("audiotestsrc", "audiotestsrc num-buffers=5", 1)
                );
                assert!(
                    run_to_end(&description),
                    "{codec:?} {rate} Hz x{channels}: {media}"
                );
            }
        }
    }

    /// The ALSA source's dry run reads the `null` PCM to its end; one on a PCM
    /// that does not exist is told apart (it would warm nothing).
    #[test]
    fn the_alsa_source_dry_run_reads_to_its_end() {
        gst::init().unwrap();
        assert!(run_to_end(CAPTURE_DRY_RUN));
        assert!(!run_to_end(
            &CAPTURE_DRY_RUN.replace("device=null", "device=hw:CARD=NoSuchCard")
        ));
    }
}
