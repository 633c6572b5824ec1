//! Fuzz target: see `p2pchat_async_std::tor::reply::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pchat_async_std::tor::reply::fuzz(data));
