//! The plugin warm-up (`media::pipeline::warm_up`): the plugins a device
//! stream needs are loaded before the first device arrives. A test binary of its
//! own, so nothing else in the process has loaded them first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gstreamer as gst;
use gstreamer::prelude::*;
use hark_agent::config::{Codec, Encoding};

fn loaded(factory: &str) -> bool {
    gst::ElementFactory::find(factory)
        .unwrap_or_else(|| panic!("no element {factory} installed"))
        .plugin()
        .is_some_and(|p| p.is_loaded())
}

#[test]
fn warm_up_loads_the_capture_and_client_plugins() {
    gst::init().unwrap();
    // What an MP3 stream with a high-pass and gain builds: source, chain,
    // encoder, parser, sink, and the client's appsrc and payloader.
    let factories = [
        "alsasrc",
        "audioresample",
        "audiocheblimit",
        "volume",
        "level",
        "lamemp3enc",
        "mpegaudioparse",
        "appsink",
        "rtpmpapay",
    ];
    let before: Vec<_> = factories.iter().filter(|f| loaded(f)).collect();
    assert!(before.is_empty(), "loaded before the warm-up: {before:?}");

    let encoding = Encoding {
        codec: Codec::Mp3,
        bitrate: 128_000,
        sample_rate: 48_000,
        channels: 1,
        gain_db: 6.0,
        highpass_hz: 100.0,
    };
    hark_agent::media::pipeline::warm_up(vec![encoding])
        .unwrap()
        .join()
        .unwrap();

    let missing: Vec<_> = factories.iter().filter(|f| !loaded(f)).collect();
    assert!(missing.is_empty(), "not loaded by the warm-up: {missing:?}");
}
