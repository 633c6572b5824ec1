//! Fuzz target: see `p2pchat::config::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat::config::fuzz(data));
