//! Probers: someone who reaches a peer's onion service and says `Hello` under the nick of
//! one of its contacts (or of a stranger), to learn who its contacts are or to plant a key
//! conflict. Three kinds: with a key of its own, which it proves (it completes the
//! handshake) or does not (it stops after the `Challenge`); and with a contact's copied
//! certificate, which it cannot prove. The checks:
//! * the first answer to every such `Hello` is a `Challenge` (or `Busy` when the signing
//!   budget is spent): the same for contacts, strangers and blocked nicks;
//! * a copied certificate never gets past the proof (`BadProof`);
//! * a key conflict is only ever recorded for a key someone proved (peer events in
//!   `hosts.rs` compare with the keys of the probers that never prove theirs).
//!
//! The prober talks to the victim's core directly (no stream, no latency): what is tested
//! is the core's answers, and the rest of the core's outputs go into the world as usual.

use p2pchat_core::conn::ConnId;
use p2pchat_core::frame::decode_first;
use p2pchat_core::handshake::{ExpectedPeer, Initiator};
use p2pchat_core::identity::{Fingerprint, Identity, OnionIdentity};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{Input, Output};
use p2pchat_core::peer_wire::{PeerFrame, RejectReason};

use super::World;
use crate::keys;

/// The pool keys the probers use: the last two, so no peer or impostor of a world small
/// enough for probers holds them.
const PROVING_KEY: usize = keys::POOL_SIZE - 1;
const SILENT_KEY: usize = keys::POOL_SIZE - 2;

/// What a prober does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its own key, proven with a `Finish`.
    Proving,
    /// Its own key, never proven: it stops after the `Challenge`.
    Silent,
    /// A contact's copied certificate: its `Finish` cannot prove the key.
    Copier,
}

impl World {
    /// The fingerprint of the key the silent probers present and never prove: a key
    /// conflict recorded for it is a violation.
    pub(super) fn unproven_prober_key(&self) -> Option<Fingerprint> {
        keys::pool_key(SILENT_KEY)
            .ok()
            .map(|k| k.public().fingerprint())
    }

    /// Whether probers fit this world (their keys are no peer's or impostor's).
    fn probers_fit(&self) -> bool {
        let most_hosts = self.config.peers + (self.config.peers / 4).max(1);
        most_hosts < SILENT_KEY
    }

    /// A random prober against a random running peer.
    pub(super) fn random_probe(&mut self) {
        if !self.probers_fit() {
            return;
        }
        let real = self.config.peers;
        let i = self.sampler.below(real);
        if self.peers[i].core.is_none() || self.peers[i].crash_after_outputs.is_some() {
            return;
        }
        // A contact's nick twice as often as a stranger's.
        let contacts: Vec<usize> = (0..real).filter(|&j| j != i && self.knows(i, j)).collect();
        let j = if !contacts.is_empty() && self.sampler.chance(2.0 / 3.0) {
            contacts[self.sampler.below(contacts.len())]
        } else {
            self.sampler.below(real)
        };
        if j == i {
            return;
        }
        let kind = match self.sampler.below(3) {
            0 => Kind::Proving,
            1 => Kind::Silent,
            _ => Kind::Copier,
        };
        self.count_fault(match kind {
            Kind::Proving => "prober (proving its key)",
            Kind::Silent => "prober (never proving)",
            Kind::Copier => "prober (copied certificate)",
        });
        let nick = self.peers[j].identity.nick.clone();
        let Some(prober) = self.prober_identity(kind, &nick, j) else {
            return;
        };
        self.probe(i, &prober, kind);
    }

    fn prober_identity(&mut self, kind: Kind, nick: &Nick, j: usize) -> Option<Identity> {
        let key = if kind == Kind::Proving {
            PROVING_KEY
        } else {
            SILENT_KEY
        };
        let rsa = keys::pool_key(key).ok()?;
        let mut seed = [0u8; 32];
        rand_core::Rng::fill_bytes(&mut self.sampler.rng, &mut seed);
        let mut identity = Identity::new(nick.clone(), rsa, OnionIdentity::from_seed(&seed));
        if kind == Kind::Copier {
            identity.certificate = self.peers[j].identity.certificate.clone();
        }
        Some(identity)
    }

    fn probe(&mut self, i: usize, prober: &Identity, kind: Kind) {
        let now = self.now;
        self.pump_peer(i);
        let victim = self.peers[i].identity.clone();
        let expected = ExpectedPeer {
            nick: victim.nick.clone(),
            onion: victim.address(),
            rsa: victim.rsa.public().clone(),
        };
        let Ok((initiator, hello)) =
            Initiator::start(&mut self.sampler.rng, prober, 9999, 1, expected)
        else {
            return;
        };
        let Some(core) = self.peers[i].core.as_mut() else {
            return;
        };
        let Ok(conn) = core.accept_incoming(now) else {
            return;
        };
        core.handle_input(
            now,
            Input::Received {
                conn,
                bytes: &hello,
            },
        );
        let first = self.probe_answer(i, conn);
        let what = format!("a Hello to peer {i} under {}", prober.nick);
        match &first {
            Some(PeerFrame::Challenge(challenge)) if kind != Kind::Silent => {
                match initiator.on_challenge(&mut self.sampler.rng, prober, challenge) {
                    Ok((finish, _)) => {
                        if let Some(core) = self.peers[i].core.as_mut() {
                            core.handle_input(now, Input::Received { conn, bytes: &finish });
                        }
                        let after = self.probe_answer(i, conn);
                        if kind == Kind::Copier
                            && !matches!(after, Some(PeerFrame::Reject(RejectReason::BadProof)))
                        {
                            self.violation(format!(
                                "{what} with a copied certificate was answered {after:?} after its Finish, not BadProof"
                            ));
                        }
                    }
                    Err(e) => self.violation(format!(
                        "{what}: peer {i}'s Challenge does not verify: {e}"
                    )),
                }
            }
            Some(PeerFrame::Challenge(_))
            | Some(PeerFrame::Reject(RejectReason::Busy | RejectReason::ShuttingDown)) => {}
            other => self.violation(format!(
                "{what} was answered {other:?}: an answer other than a Challenge tells a prober who that nick is to peer {i}"
            )),
        }
        if let Some(core) = self.peers[i].core.as_mut() {
            core.handle_input(now, Input::Closed { conn });
        }
        self.pump_peer(i);
    }

    /// Drains peer `i`'s outputs: the first frame it sends on the prober's `conn` is the
    /// answer; everything else goes into the world.
    fn probe_answer(&mut self, i: usize, conn: ConnId) -> Option<PeerFrame> {
        let mut answer = None;
        while let Some(output) = self.peers[i].core.as_mut().and_then(|c| c.poll_output()) {
            match output {
                Output::Transmit { conn: c, bytes } if c == conn => {
                    answer = answer.or_else(|| decode_first(&bytes));
                }
                Output::Close { conn: c } if c == conn => {}
                other => self.peer_output(i, other),
            }
        }
        answer
    }
}
