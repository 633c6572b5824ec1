//! Deterministic in-memory simulator for p2pchat.
//!
//! A [`World`] runs one registry and many peers — the same `p2pchat-core` state machines
//! the real runtime drives — over virtual Tor streams, on a virtual clock, with every
//! choice (keys, nonces, latencies, faults, what users do) drawn from one seeded ChaCha
//! RNG. Same seed and config ⇒ the same event trace, summarised by a SHA-256 digest.
//! Invariants are checked as it runs; see [`Summary`] for what is counted.
//!
//! ```no_run
//! use p2pchat_sim::{FaultLevel, SimConfig, World};
//! let mut world = World::new(SimConfig::new(7, 30, 500, FaultLevel::Heavy), None)?;
//! let summary = world.run(|_| {});
//! assert_eq!(summary.invariant_violations, 0, "replay with seed {}", summary.seed);
//! # Ok::<(), p2pchat_sim::PoolError>(())
//! ```

#![forbid(unsafe_code)]

mod config;
mod keys;
mod ledger;
mod net;
mod queue;
mod sample;
mod summary;
mod trace;
mod world;

pub use config::{FaultLevel, FaultRates, Latency, SimConfig, UnknownFaultLevel, Workload};
pub use keys::{POOL_SIZE, PoolError, pool_key};
pub use ledger::{Fate, Violation};
pub use net::Host;
pub use summary::Summary;
pub use world::{FaultKind, Progress, World};
