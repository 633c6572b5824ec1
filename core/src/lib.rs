//! # p2pchat-core
//!
//! The sans-IO protocol core of p2pchat: wire formats, identities and cryptography, the
//! peer handshake, the sealed channel, and the state machines of a peer and of the registry.
//!
//! Nothing here touches a socket, a clock, a thread or a global RNG. Callers feed inputs
//! with `handle_input(now, ..)` and user commands, then drain `poll_output()` until it
//! returns `None`, and call `handle_timeout(now)` at `poll_timeout()`. See
//! `docs/PROTOCOL.md` for the wire protocol.
#![forbid(unsafe_code)]

// `--cfg fuzzing` swaps signature checks for fakes that accept anything (see `identity`).
// Only the fuzz crate, which enables the `fuzz` feature, may build that way: any other
// build with the flag would verify every signature.
#[cfg(all(fuzzing, not(feature = "fuzz")))]
compile_error!(
    "`--cfg fuzzing` makes every signature verify: it is only for the fuzz crate \
     (which enables p2pchat-core's `fuzz` feature); build without it"
);

pub mod frame;
#[cfg(any(test, all(fuzzing, feature = "test-keys")))]
pub mod fuzzing;
#[cfg(any(test, all(fuzzing, feature = "test-keys")))]
pub(crate) mod harness;
pub mod identity;
pub mod nick;
pub mod time;
#[cfg(test)]
mod wire_properties;

#[cfg(any(test, feature = "test-keys"))]
pub mod test_keys;

pub use nick::Nick;
pub use time::Instant;
pub mod channel;
pub mod conn;
pub mod handshake;
pub mod peer;
pub mod peer_wire;
pub mod registry;
pub mod rng;
