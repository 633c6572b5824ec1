//! Fuzz target: see `p2pchat_core::fuzzing::channel`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat_core::fuzzing::channel(data));
