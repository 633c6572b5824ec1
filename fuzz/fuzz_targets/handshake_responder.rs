//! Fuzz target: see `p2pchat_core::fuzzing::handshake_responder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat_core::fuzzing::handshake_responder(data));
