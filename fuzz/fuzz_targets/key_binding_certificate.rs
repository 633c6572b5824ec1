//! Fuzz target: see `p2pchat_core::fuzzing::key_binding_certificate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat_core::fuzzing::key_binding_certificate(data));
