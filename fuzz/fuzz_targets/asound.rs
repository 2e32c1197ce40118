//! cargo-fuzz target: hark_agent::fuzz::asound (see agent/src/fuzz.rs for its invariants).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hark_agent::fuzz::asound(data));
