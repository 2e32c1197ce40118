//! Capture pipelines: one always-on GStreamer pipeline per stream that captures,
//! conditions (resample, high-pass, gain), measures (level) and encodes once, and
//! hands encoded buffers to an `appsink` for the RTSP clients to share.
//!
//! Owns: how a [`StreamSpec`] becomes GStreamer elements. Must not touch: the RTSP
//! server or stream state; the caller attaches the bus and the appsink callback.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::config::{Codec, Encoding, GROUP_RATE, Source, StreamSpec};

/// The processing chain after the source, as a launch description. Only numbers
/// from the validated config go in here; free-form strings (ALSA device names) are
/// set as properties on the source element, never pasted into a description.
pub fn chain_description(enc: &Encoding, level_interval_ns: u64) -> String {
    let mut parts = vec![
        "audioconvert".to_string(),
        "audioresample".to_string(),
        format!(
            "audio/x-raw,rate={},channels={}",
            enc.sample_rate, enc.channels
        ),
    ];
    if enc.highpass_hz > 0.0 {
        parts.push("audioconvert".into());
        parts.push(format!(
            "audiocheblimit mode=high-pass cutoff={} poles=4",
            enc.highpass_hz
        ));
    }
    if enc.gain_db != 0.0 {
        parts.push(format!("volume volume={}", db_to_linear(enc.gain_db)));
    }
    parts.push(format!(
        "level name=level interval={level_interval_ns} post-messages=true"
    ));
    parts.push("audioconvert".into());
    parts.push(encoder_description(enc));
    // sync=false: the source is live and paces itself; the sink must never wait.
    parts.push("appsink name=sink sync=false max-buffers=200 drop=true".into());
    parts.join(" ! ")
}

fn encoder_description(enc: &Encoding) -> String {
    match enc.codec {
        Codec::Opus => format!(
            "opusenc bitrate={} frame-size={}",
            enc.bitrate, enc.frame_ms
        ),
        Codec::L16 => "audio/x-raw,format=S16BE,layout=interleaved".into(),
        Codec::Aac => format!("avenc_aac bitrate={} ! aacparse", enc.bitrate),
        Codec::Mp3 => format!(
            "lamemp3enc target=bitrate cbr=true bitrate={} ! mpegaudioparse",
            enc.bitrate / 1000
        ),
    }
}

/// The RTP payloader of a codec, as a launch description.
pub fn payloader_description(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "rtpopuspay name=pay0 pt=96",
        Codec::L16 => "rtpL16pay name=pay0 pt=96",
        Codec::Aac => "rtpmp4gpay name=pay0 pt=96",
        Codec::Mp3 => "rtpmpapay name=pay0",
    }
}

/// The RTSP media pipeline a client gets: our `appsrc` and the payloader.
pub fn media_description(codec: Codec) -> String {
    format!("( appsrc name=src ! {} )", payloader_description(codec))
}

/// A self-contained tone media in `enc`'s format (the start-up warm-up session
/// plays it; see `media::warm_up_session`). The converter after the resampler
/// gives L16 its big-endian samples (the resampler makes native-endian ones
/// only: without it an L16 first stream's warm-up was refused, 503).
pub fn tone_media_description(enc: &Encoding) -> String {
    format!(
        "( audiotestsrc is-live=true ! audioconvert ! audioresample ! audio/x-raw,rate={},channels={} ! audioconvert ! {} ! {} )",
        enc.sample_rate,
        enc.channels,
        encoder_description(enc),
        payloader_description(enc.codec)
    )
}

pub fn db_to_linear(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// Errors building a capture pipeline; each names the stream.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("stream {stream}: cannot create element {element}: {source}")]
    Element {
        stream: String,
        element: &'static str,
        source: glib::BoolError,
    },
    #[error("stream {stream}: cannot build processing chain: {source}")]
    Chain { stream: String, source: glib::Error },
    #[error("stream {stream}: cannot link source to processing chain: {source}")]
    Link {
        stream: String,
        source: glib::BoolError,
    },
    #[error("stream {stream}: processing chain has no appsink")]
    NoSink { stream: String },
}

use gstreamer::glib;

/// A capture pipeline and its appsink, not yet started.
pub struct Capture {
    pub pipeline: gst::Pipeline,
    pub sink: gstreamer_app::AppSink,
}

/// The group's own source: silence ticking live on the system clock, one buffer
/// per [`GROUP_TICK_FRAMES`]; `media/group.rs` fills each from the mixer.
pub fn group_source_description(channels: u32) -> String {
    format!(
        "audiotestsrc is-live=true wave=silence samplesperbuffer={GROUP_TICK_FRAMES} ! \
         capsfilter name=groupcaps caps=audio/x-raw,format=F32LE,layout=interleaved,rate={GROUP_RATE},channels={channels}"
    )
}

/// Frames per group buffer (20 ms).
pub const GROUP_TICK_FRAMES: u32 = GROUP_RATE / 50;

/// A member's branch into a group: its capture as 32-bit float at the group
/// rate with `channels` channels, handed to an appsink that never waits.
pub fn tap_description(channels: u32) -> String {
    format!(
        "audioconvert ! audioresample ! \
         audio/x-raw,format=F32LE,layout=interleaved,rate={GROUP_RATE},channels={channels} ! \
         appsink name=raw sync=false async=false max-buffers=8 drop=true"
    )
}

/// `tap`: put a tee after the source for groups to take this capture from
/// (`media/group.rs`); only streams that are a group's member get one.
pub fn build(spec: &StreamSpec, level_interval_ns: u64, tap: bool) -> Result<Capture, BuildError> {
    let stream = || spec.name.clone();
    let element = |element: &'static str| {
        move |source| BuildError::Element {
            stream: stream(),
            element,
            source,
        }
    };
    let src: gst::Element = match &spec.source {
        Source::Tone {
            freq_hz,
            level_dbfs,
        } => gst::ElementFactory::make("audiotestsrc")
            .name("src")
            .property("is-live", true)
            .property_from_str("wave", "sine")
            .property("freq", *freq_hz)
            .property("volume", db_to_linear(*level_dbfs))
            .build()
            .map_err(element("audiotestsrc"))?,
        Source::Alsa { device, buffer } => {
            let buffer_us = i64::try_from(buffer.as_micros()).unwrap_or(i64::MAX);
            gst::ElementFactory::make("alsasrc")
                .name("src")
                .property("device", device.as_str())
                .property("buffer-time", buffer_us)
                .property("latency-time", 20_000i64.min(buffer_us / 2))
                .build()
                .map_err(element("alsasrc"))?
        }
        Source::Group(_) => {
            let bin = gst::parse::bin_from_description(
                &group_source_description(spec.encoding.channels),
                true,
            )
            .map_err(|source| BuildError::Chain {
                stream: stream(),
                source,
            })?;
            bin.set_property("name", "src");
            bin.upcast()
        }
    };
    let chain = gst::parse::bin_from_description(
        &chain_description(&spec.encoding, level_interval_ns),
        true,
    )
    .map_err(|source| BuildError::Chain {
        stream: stream(),
        source,
    })?;
    let sink = chain
        .by_name("sink")
        .and_then(|e| e.downcast::<gstreamer_app::AppSink>().ok())
        .ok_or_else(|| BuildError::NoSink { stream: stream() })?;
    let pipeline = gst::Pipeline::with_name(&format!("capture-{}", spec.name));
    let link = |source: glib::BoolError| BuildError::Link {
        stream: stream(),
        source,
    };
    pipeline
        .add_many([&src, chain.upcast_ref()])
        .map_err(link)?;
    if !tap || matches!(spec.source, Source::Group(_)) {
        src.link(&chain)
            .map_err(|e| link(glib::bool_error!("{e}")))?;
    } else {
        // With one branch a tee is a function call per buffer.
        let tee = gst::ElementFactory::make("tee")
            .name(TAP)
            .property("allow-not-linked", true)
            .build()
            .map_err(element("tee"))?;
        pipeline.add(&tee).map_err(link)?;
        gst::Element::link_many([&src, &tee, chain.upcast_ref()])
            .map_err(|e| link(glib::bool_error!("{e}")))?;
    }
    // Capture and RTSP media run on the same clock, so buffer times translate
    // exactly between them (see fanout.rs).
    pipeline.use_clock(Some(&gst::SystemClock::obtain()));
    Ok(Capture { pipeline, sink })
}

/// The name of the tee a member's capture pipeline has after its source.
pub const TAP: &str = "tap";

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(codec: Codec) -> Encoding {
        Encoding {
            codec,
            bitrate: 64_000,
            sample_rate: 48_000,
            channels: 2,
            gain_db: 0.0,
            highpass_hz: 0.0,
            frame_ms: 20,
        }
    }

    #[test]
    fn chain_has_level_encoder_and_sink_in_order() {
        let d = chain_description(&enc(Codec::Opus), 250_000_000);
        let level = d.find("level name=level").unwrap();
        let opus = d.find("opusenc bitrate=64000").unwrap();
        let sink = d.find("appsink name=sink").unwrap();
        assert!(level < opus && opus < sink, "{d}");
        assert!(d.contains("rate=48000,channels=2"));
        assert!(!d.contains("volume"));
        assert!(!d.contains("audiocheblimit"));
    }

    #[test]
    fn gain_and_highpass_are_inserted_before_the_meter() {
        let mut e = enc(Codec::L16);
        e.gain_db = 20.0;
        e.highpass_hz = 120.0;
        let d = chain_description(&e, 1);
        let hp = d.find("audiocheblimit mode=high-pass cutoff=120").unwrap();
        let vol = d.find("volume volume=10").unwrap();
        let level = d.find("level").unwrap();
        assert!(hp < vol && vol < level, "{d}");
        assert!(d.contains("format=S16BE"));
    }

    #[test]
    fn every_codec_builds_and_links() {
        gst::init().unwrap();
        for codec in [Codec::Opus, Codec::L16, Codec::Aac, Codec::Mp3] {
            let mut e = enc(codec);
            if codec == Codec::Mp3 {
                e.bitrate = 128_000;
            }
            let spec = StreamSpec {
                name: format!("t-{}", codec.as_str()),
                source: Source::Tone {
                    freq_hz: 1000.0,
                    level_dbfs: -6.0,
                },
                encoding: e,
                record: false,
            };
            let c = build(&spec, 100_000_000, true).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            c.pipeline.set_state(gst::State::Playing).unwrap();
            let sample = c
                .sink
                .try_pull_sample(gst::ClockTime::from_seconds(5))
                .unwrap_or_else(|| panic!("{codec:?}: no encoded buffer"));
            assert!(sample.buffer().unwrap().size() > 0);
            c.pipeline.set_state(gst::State::Null).unwrap();
            gst::parse::launch(&media_description(codec).replace(['(', ')'], ""))
                .unwrap_or_else(|e| panic!("{codec:?} media: {e}"));
        }
    }
}
