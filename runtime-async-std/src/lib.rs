//! The real p2pchat runtime on async-std: the peer loop and the registry server drive
//! `p2pchat-core` over WebSocket and Tor (SOCKS5 dialing, onion-service listener, control
//! port). Thin by design: every protocol decision is the core's.
//!
//! * [`transport`]: dial through Tor's SOCKS5 port (names go to Tor, never resolved here),
//!   or loopback only in `direct` mode.
//! * [`websocket`]: tungstenite settings and the registry client connection.
//! * [`wire`]: per-connection reader and writer tasks with bounded queues.
//! * [`peer_runtime`]: one task owns a `Peer`; commands in, events out.
//! * [`updates`]: every event to every subscriber, and the view after each drain.
//! * [`server_runtime`]: one task owns a `Registry`.
//! * [`store`]: what a peer must not forget, in SQLite, encrypted under a passphrase.
//! * [`tor`]: control-port client (reply parser sans-IO), launching our own tor.

#![forbid(unsafe_code)]

pub mod clock;
pub mod local;
pub mod peer_runtime;
pub mod rng;
pub mod server_runtime;
pub mod store;
pub mod tor;
pub mod transport;
pub mod updates;
pub mod websocket;
pub mod wire;

pub use peer_runtime::{Answer, Command, PeerHandle, PeerSettings, Stopped, spawn_peer};
pub use server_runtime::{ServerSettings, StopServer, spawn_server};
pub use transport::{DialError, Transport};
pub use updates::{Subscription, Update};
