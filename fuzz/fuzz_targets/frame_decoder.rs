//! Fuzz target: see `p2pchat_core::fuzzing::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat_core::fuzzing::frame_decoder(data));
