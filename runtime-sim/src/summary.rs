//! The summary of a run: what `p2pchat sim` prints, and what tests assert on.

use std::collections::BTreeMap;

use crate::ledger::Violation;

/// Everything a run counted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The seed that replays this run.
    pub seed: u64,
    /// Peers in the world.
    pub peers: usize,
    /// The fault level's name (filled in by the caller that chose it).
    pub faults: String,
    /// Messages the users sent (accepted by their core).
    pub messages_sent: u64,
    /// Reported delivered to their sender.
    pub delivered: u64,
    /// Reported failed to their sender.
    pub failed: u64,
    /// Unresolved when their sender crashed.
    pub lost_in_crash: u64,
    /// Sent after the copy of its sender's disk that was later put back (the user chose
    /// the older copy; not a violation).
    pub forgotten_by_restore: u64,
    /// Still unresolved at the end (each one is also a violation).
    pub unresolved: u64,
    /// Messages shown to a receiver more than once.
    pub duplicates: u64,
    /// Messages shown after a later message of the same sender.
    pub out_of_order: u64,
    /// Successful registrations (including re-registrations).
    pub registrations: u64,
    /// Chat connections that reached `Connected`, counted on each side (a chat connection is
    /// two: one per peer).
    pub handshakes: u64,
    /// Handshakes refused or failed authentication.
    pub handshakes_rejected: u64,
    /// Chat requests denied by their recipient.
    pub requests_denied: u64,
    /// Dials the peers asked for (registry and peers).
    pub dials: u64,
    /// Dials that failed (refused, unreachable).
    pub dials_failed: u64,
    /// Dials whose stream opened but whose target's core refused it (full, shutting
    /// down): `Connected`, then `Closed`, as over Tor.
    pub inbound_refused: u64,
    /// Times a peer was told it missed presence (`Resync`, after a slow reader's frames
    /// were dropped).
    pub presence_resyncs: u64,
    /// Faults injected, all kinds.
    pub faults_injected: u64,
    /// Faults injected, by kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Peers sharing an RSA key with another (only beyond the 1,024-key pool).
    pub shared_rsa_keys: usize,
    /// Virtual time simulated.
    pub virtual_ms: u64,
    /// Wall-clock time spent.
    pub wall_ms: u64,
    /// Events processed.
    pub events: u64,
    /// SHA-256 over the whole event trace: equal seeds and configs give equal digests.
    pub trace_digest: String,
    /// Invariant violations (0 for a correct run).
    pub invariant_violations: u64,
    /// The first violations, with the step and virtual time each was seen at.
    pub violations: Vec<Violation>,
    /// Why the trace file could not be written, if it could not.
    pub trace_error: Option<String>,
}
