//! Fuzz target: see `p2pchat_core::fuzzing::handshake_initiator`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat_core::fuzzing::handshake_initiator(data));
