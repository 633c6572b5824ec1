//! # p2pchat-sim
//!
//! The deterministic simulator for [`p2pchat_core`]. Not yet written; see the project's
//! issues. This crate exists so the workspace layout is fixed from the start.
#![forbid(unsafe_code)]

pub use p2pchat_core as core;
