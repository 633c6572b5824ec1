//! Cross-crate tests of p2pchat. The tests live under `tests/tests/`:
//! `sim_determinism` (same seed, same trace), `sim_faults` (one scripted scenario per
//! fault kind), `sim_sweep` (many seeds under heavy faults).
#![forbid(unsafe_code)]
