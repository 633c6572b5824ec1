//! How a peer behaves: policies, limits and timers.

use crate::identity::OnionAddress;
use core::time::Duration;

/// What to do with an incoming chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptPolicy {
    /// Raise [`crate::peer::Event::ConnectionRequest`] and wait for `accept`/`deny`.
    Ask,
    /// Accept every authenticated request.
    AcceptAll,
    /// Deny every request.
    DenyAll,
}

/// Exponential backoff with jitter for reconnection.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Longest delay between retries.
    pub max: Duration,
    /// Retries before the chat is marked failed.
    pub max_attempts: u32,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): `initial · 2^(attempt-1)`, capped,
    /// then scaled by `jitter` in [0.5, 1.0] so that peers do not retry in lockstep.
    pub fn delay(&self, attempt: u32, jitter_permille: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let permille = 500 + jitter_permille % 501;
        base.saturating_mul(permille) / 1000
    }
}

/// A peer's configuration.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The port our onion service listens on (advertised to the registry and peers).
    pub port: u16,
    /// The onion address of the registry we dial, which our registration names (so no
    /// other registry can use it); `None` for a registry reached without Tor (loopback).
    pub registry_onion: Option<OnionAddress>,
    /// What to do with incoming chat requests.
    pub accept_policy: AcceptPolicy,
    /// Ask the registry for presence pushes (who joins and leaves). Each watcher costs the
    /// registry up to one frame per presence interval, so large simulations and bots may
    /// turn it off.
    pub watch_presence: bool,
    /// Most chats at once.
    pub max_chats: usize,
    /// Most inbound connections that have not yet become chats.
    pub max_pending_inbound: usize,
    /// Most outbound dials in progress (Tor limits circuits under construction).
    pub max_concurrent_dials: usize,
    /// Most messages per chat sent but not yet acknowledged.
    pub max_unacked: usize,
    /// Time allowed for an outbound connection to open.
    pub dial_timeout: Duration,
    /// Time an inbound connection has to send its `Hello` (a peer sends it at once; an
    /// idle connection only holds a slot).
    pub hello_timeout: Duration,
    /// Time allowed for a handshake, once connected.
    pub handshake_timeout: Duration,
    /// Time allowed for the user to answer a connection request.
    pub decision_timeout: Duration,
    /// Send a keep-alive after this much silence on an established chat.
    pub keepalive_interval: Duration,
    /// Drop a connection after this much silence from the other side.
    pub idle_timeout: Duration,
    /// Heartbeat interval towards the registry.
    pub registry_ping_interval: Duration,
    /// Time allowed for a registry answer.
    pub registry_timeout: Duration,
    /// Reconnection policy for chats and the registry.
    pub backoff: Backoff,
    /// How often contacts with queued messages are tried while they seem offline.
    pub delivery_backoff: Backoff,
    /// How long a message waits in the outbox before it fails as expired.
    pub outbox_expiry: Duration,
    /// Most contacts (each costs a little memory and storage).
    pub max_contacts: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            port: 5051,
            registry_onion: None,
            accept_policy: AcceptPolicy::Ask,
            watch_presence: true,
            max_chats: 64,
            max_pending_inbound: 16,
            max_concurrent_dials: 4,
            max_unacked: 1000,
            dial_timeout: Duration::from_secs(120),
            hello_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(60),
            decision_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            registry_ping_interval: Duration::from_secs(30),
            registry_timeout: Duration::from_secs(60),
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                max_attempts: 8,
            },
            delivery_backoff: Backoff {
                initial: Duration::from_secs(30),
                max: Duration::from_secs(15 * 60),
                max_attempts: u32::MAX,
            },
            outbox_expiry: Duration::from_secs(30 * 86_400),
            max_contacts: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_between_half_and_full() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            max_attempts: 5,
        };
        assert_eq!(b.delay(1, 500), Duration::from_secs(1));
        assert_eq!(b.delay(1, 0), Duration::from_millis(500));
        assert_eq!(b.delay(3, 500), Duration::from_secs(4));
        assert_eq!(b.delay(30, 500), Duration::from_secs(10));
    }
}
