//! cargo-fuzz target: hark_agent::fuzz::rtsp_url (see agent/src/fuzz.rs for its invariants).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hark_agent::fuzz::rtsp_url(data));
