//! What a peer must not forget: contacts (pinned keys, message-id counters, de-duplication
//! state) and the outbox. The core never touches storage: each change leaves it as a
//! [`StoreOp`] in the same ordered queue as `Transmit`, and a runtime applies it durably
//! before it acts on any later output, so "stored before sent" and "stored before
//! acknowledged" hold by construction. At start-up the runtime hands the stored
//! [`PeerState`] back to [`crate::peer::Peer::restore`].
//!
//! [`PeerState::apply`] is the reference meaning of every operation: the core keeps its own
//! state with it, the simulator's disk is one, and a real store must agree with it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::identity::{Fingerprint, KeyBindingCertificate};
use crate::nick::Nick;

/// Wall-clock time: milliseconds since the Unix epoch, as the runtime reports it. The
/// core's [`crate::time::Instant`] has an arbitrary origin, so history and expiry use this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WallTime(pub u64);

impl WallTime {
    /// `self` plus `d`, saturating.
    pub fn plus(self, d: core::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

/// What we know of a contact's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContactKey {
    /// Nothing yet: the first verified record or accepted request pins it.
    Unknown,
    /// The user gave the fingerprint (configuration `[contacts]`); the first record with
    /// that key pins its certificate.
    Fingerprint(Fingerprint),
    /// Pinned: the onion key's certificate for the contact's RSA key, and the port.
    Pinned {
        /// Onion address, nick and RSA key, signed by the onion key.
        certificate: KeyBindingCertificate,
        /// The port of the contact's onion service.
        port: u16,
    },
}

impl ContactKey {
    /// The fingerprint of the RSA key we expect, if any.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Self::Unknown => None,
            Self::Fingerprint(f) => Some(*f),
            Self::Pinned { certificate, .. } => Some(certificate.rsa.fingerprint()),
        }
    }
}

/// A key presented for a contact that is not the pinned one, by someone who proved they
/// hold it. It is refused, and shown, until the user checks it (`verify`) or accepts one of
/// the two fingerprints by name (`trust`); it is kept with the contact, so the warning
/// survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConflict {
    /// The fingerprint we expected.
    pub pinned: Fingerprint,
    /// The fingerprint presented.
    pub presented: Fingerprint,
    /// The presented certificate and port, when we saw them (an inbound handshake).
    pub certificate: Option<(KeyBindingCertificate, u16)>,
}

/// One contact, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// Their nick (canonical).
    pub nick: Nick,
    /// Their key, pinned on first use.
    pub key: ContactKey,
    /// The user compared the fingerprint out of band (`/verify`, or the configuration).
    pub verified: bool,
    /// Their requests are refused without asking.
    pub blocked: bool,
    /// The scope of our message ids towards them, announced in every handshake. It changes
    /// only if this store is lost; the contact then knows our ids started over.
    pub our_instance: u64,
    /// The id our next message to them gets (ids are never reused within `our_instance`).
    pub next_id: u64,
    /// Their instance, from their last message we stored.
    pub peer_instance: Option<u64>,
    /// The highest id of theirs we stored (and showed) within `peer_instance`.
    pub received_upto: u64,
    /// The [`QueuedMessage::nonce`] of their message `received_upto` (0: not known).
    pub received_nonce: u64,
    /// The highest id of ours the contact acknowledged, and its nonce (0: not known).
    /// With `next_id`, this is what tells a contact's record of us from ours: a contact
    /// holding an id we never numbered, or another message under an id we did, means
    /// this store is an older copy of itself.
    pub delivered_upto: u64,
    /// The nonce of message `delivered_upto`.
    pub delivered_nonce: u64,
    /// The highest id of ours that failed (withdrawn, refused, expired), and its nonce: the
    /// contact may have stored it although its acknowledgement never came.
    pub failed_upto: u64,
    /// The nonce of message `failed_upto`.
    pub failed_nonce: u64,
    /// Their messages stored since the user last read the conversation. Kept with the
    /// contact, so that a message stored (and acknowledged) but never shown — the process
    /// ended first — is shown as new the next time an interface opens.
    pub unread: u32,
    /// A proven key other than the pinned one, not yet settled by the user (boxed: it is
    /// rare, and holds a whole certificate).
    pub conflict: Option<Box<KeyConflict>>,
}

impl ContactRecord {
    /// A contact we know nothing about yet.
    pub fn new(nick: Nick, our_instance: u64) -> Self {
        Self {
            nick,
            key: ContactKey::Unknown,
            verified: false,
            blocked: false,
            our_instance,
            next_id: 1,
            peer_instance: None,
            received_upto: 0,
            received_nonce: 0,
            delivered_upto: 0,
            delivered_nonce: 0,
            failed_upto: 0,
            failed_nonce: 0,
            unread: 0,
            conflict: None,
        }
    }
}

/// A message accepted for sending and not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// To whom.
    pub to: Nick,
    /// Our id for it (within the contact's `our_instance`).
    pub id: u64,
    /// Drawn at random when it was queued, never 0 (0 marks a message queued before
    /// nonces existed): it tells this message from another that a restored, older copy
    /// of the store numbered with the same id.
    pub nonce: u64,
    /// The text.
    pub text: String,
    /// When the user wrote it.
    pub queued_at: WallTime,
}

/// How a queued message left the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The contact acknowledged it.
    Delivered,
    /// It will never be delivered (why, for the user).
    Failed(String),
}

/// One durable change, applied in order.
// A contact record (with its pinned certificate inline) is the largest change and among the
// most frequent (every message moves a counter in it); it lives only in the output queue
// until stored, so boxing it would cost an allocation per change for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOp {
    /// Creates or replaces a contact.
    Contact(ContactRecord),
    /// Forgets a contact that was never pinned and has nothing queued.
    ForgetContact(Nick),
    /// A new message in the outbox (and in history); the contact's `next_id` passes it.
    Queued(QueuedMessage),
    /// A message left the outbox (history keeps it with this outcome).
    Resolved {
        /// To whom it was.
        to: Nick,
        /// Its id.
        id: u64,
        /// Delivered or failed.
        outcome: Outcome,
    },
    /// A message from a contact, stored before it is shown or acknowledged: it moves the
    /// contact's de-duplication mark, and history keeps the text.
    Received {
        /// From whom.
        from: Nick,
        /// Their instance.
        peer_instance: u64,
        /// Their id.
        id: u64,
        /// Their nonce for it.
        nonce: u64,
        /// The text.
        text: String,
        /// When it arrived.
        at: WallTime,
    },
}

/// Everything a peer restores at start-up (history stays in the store: it is read on
/// demand, never held in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// Contacts by nick.
    pub contacts: BTreeMap<Nick, ContactRecord>,
    /// Unresolved messages per contact, oldest first.
    pub outbox: BTreeMap<Nick, VecDeque<QueuedMessage>>,
}

impl PeerState {
    /// Applies `op`: the meaning every store must give it.
    pub fn apply(&mut self, op: &StoreOp) {
        match op {
            StoreOp::Contact(record) => {
                self.contacts.insert(record.nick.clone(), record.clone());
            }
            StoreOp::ForgetContact(nick) => {
                self.contacts.remove(nick);
                self.outbox.remove(nick);
            }
            StoreOp::Queued(message) => {
                if let Some(c) = self.contacts.get_mut(&message.to) {
                    c.next_id = c.next_id.max(message.id.saturating_add(1));
                }
                self.outbox
                    .entry(message.to.clone())
                    .or_default()
                    .push_back(message.clone());
            }
            StoreOp::Resolved { to, id, outcome } => {
                let nonce = self.queued(to).find(|m| m.id == *id).map(|m| m.nonce);
                if let (Some(nonce), Some(c)) = (nonce, self.contacts.get_mut(to)) {
                    let (upto, mark) = match outcome {
                        Outcome::Delivered => (&mut c.delivered_upto, &mut c.delivered_nonce),
                        Outcome::Failed(_) => (&mut c.failed_upto, &mut c.failed_nonce),
                    };
                    if *id > *upto {
                        (*upto, *mark) = (*id, nonce);
                    }
                }
                if let Some(queue) = self.outbox.get_mut(to) {
                    queue.retain(|m| m.id != *id);
                    if queue.is_empty() {
                        self.outbox.remove(to);
                    }
                }
            }
            StoreOp::Received {
                from,
                peer_instance,
                id,
                nonce,
                ..
            } => {
                if let Some(c) = self.contacts.get_mut(from) {
                    if c.peer_instance != Some(*peer_instance) {
                        c.peer_instance = Some(*peer_instance);
                        c.received_upto = 0;
                        c.received_nonce = 0;
                    }
                    if *id > c.received_upto {
                        c.received_upto = *id;
                        c.received_nonce = *nonce;
                        c.unread = c.unread.saturating_add(1);
                    }
                }
            }
        }
    }

    /// Messages waiting for `nick`, oldest first.
    pub fn queued(&self, nick: &Nick) -> impl Iterator<Item = &QueuedMessage> {
        self.outbox.get(nick).into_iter().flatten()
    }

    /// How many messages wait for `nick`.
    pub fn queued_len(&self, nick: &Nick) -> usize {
        self.outbox.get(nick).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn queued_messages_advance_the_id_counter_and_leave_when_resolved() {
        let mut s = PeerState::default();
        s.apply(&StoreOp::Contact(ContactRecord::new(nick("bob"), 7)));
        for id in 1..=3 {
            s.apply(&StoreOp::Queued(QueuedMessage {
                to: nick("bob"),
                id,
                nonce: id,
                text: format!("m{id}"),
                queued_at: WallTime(id),
            }));
        }
        assert_eq!(s.contacts[&nick("bob")].next_id, 4);
        s.apply(&StoreOp::Resolved {
            to: nick("bob"),
            id: 2,
            outcome: Outcome::Delivered,
        });
        let ids: Vec<u64> = s.queued(&nick("bob")).map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 3]);
        // The counter never goes back, even when the outbox empties.
        for id in [1, 3] {
            s.apply(&StoreOp::Resolved {
                to: nick("bob"),
                id,
                outcome: Outcome::Failed("x".into()),
            });
        }
        assert_eq!(s.queued_len(&nick("bob")), 0);
        assert_eq!(s.contacts[&nick("bob")].next_id, 4);
    }

    #[test]
    fn a_received_message_moves_the_mark_and_a_new_peer_instance_resets_it() {
        let mut s = PeerState::default();
        s.apply(&StoreOp::Contact(ContactRecord::new(nick("bob"), 7)));
        let received = |instance, id| StoreOp::Received {
            from: nick("bob"),
            peer_instance: instance,
            id,
            nonce: id,
            text: String::new(),
            at: WallTime(0),
        };
        s.apply(&received(1, 5));
        assert_eq!(s.contacts[&nick("bob")].received_upto, 5);
        s.apply(&received(2, 1));
        let c = &s.contacts[&nick("bob")];
        assert_eq!((c.peer_instance, c.received_upto), (Some(2), 1));
    }
}
