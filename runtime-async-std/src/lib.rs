//! # p2pchat-async-std
//!
//! The real runtime: drives [`p2pchat_core`] over WebSocket and Tor with async-std.
//! Not yet written; see the project's issues. This crate exists so the workspace layout is
//! fixed from the start.
#![forbid(unsafe_code)]

pub use p2pchat_core as core;
