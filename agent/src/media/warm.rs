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
//! and ALSA's `null` PCM is opened and closed.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::pipeline;
use crate::config::Encoding;

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
    if let Ok(pcm) = alsa::PCM::new("null", alsa::Direction::Capture, true) {
        drop(pcm);
    }
    (t.elapsed(), ran)
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
    let Ok(p) = gst::parse::launch(&description) else {
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
        }
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
        assert_eq!(ran, 2);
    }
}
