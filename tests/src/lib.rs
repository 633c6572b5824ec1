//! Cross-crate tests of p2pchat. The tests live under `tests/tests/`:
//! `sim_determinism` (same seed, same trace), `sim_faults` (one scripted scenario per
//! fault kind), `sim_sweep` (many seeds under heavy faults).
//! The library part is the private Tor network harness ([`tor_network`]) used by
//! `tests/tor_network.rs`.
#![forbid(unsafe_code)]
// Test support: a panic is how it reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod tmux;
pub mod tor_network;
