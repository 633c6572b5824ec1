//! The mailbox: which of a contact's queued messages went out on the current connection,
//! which their current instance may have seen, and the cumulative acknowledgements and
//! de-duplication around them. The messages themselves are in the durable
//! [`super::PeerState`]; only what a connection changes by the second lives here.

use super::durable::{Outcome, QueuedMessage, StoreOp};
use super::{Event, Peer};
use crate::nick::Nick;

/// What to do with a received message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Receipt {
    /// New: store it, show it, then acknowledge.
    Deliver,
    /// Seen before (a resend): acknowledge again, do not show.
    Duplicate,
}

/// Transmission state of one contact's outbox.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    /// Highest id transmitted on the current connection (0 = none).
    transmitted: u64,
    /// Highest id transmitted to the contact's current instance. After a restart we cannot
    /// know, so every message queued then counts as exposed.
    exposed_upto: u64,
    /// Highest id reported [`Event::Sent`] in this run.
    reported_sent: u64,
}

impl Mailbox {
    /// A mailbox after a restart: everything queued may have reached the contact.
    pub(super) fn restored(queued: &[QueuedMessage]) -> Self {
        let last = queued.iter().map(|m| m.id).max().unwrap_or(0);
        Self {
            transmitted: 0,
            exposed_upto: last,
            reported_sent: last,
        }
    }

    /// The connection changed: everything unacknowledged must be sent again.
    pub(super) fn connection_lost(&mut self) {
        self.transmitted = 0;
    }
}

impl Peer {
    /// Queued messages to `nick` not yet transmitted on the current connection; marks them
    /// transmitted and reports the first transmission of each as [`Event::Sent`].
    pub(super) fn take_untransmitted(&mut self, nick: &Nick) -> Vec<(u64, u64, String)> {
        let mailbox = self.mailboxes.entry(nick.clone()).or_default();
        let from = mailbox.transmitted;
        let out: Vec<(u64, u64, String)> = self
            .state
            .queued(nick)
            .filter(|m| m.id > from)
            .map(|m| (m.id, m.nonce, m.text.clone()))
            .collect();
        let Some(&(last, _, _)) = out.last() else {
            return out;
        };
        mailbox.transmitted = last;
        mailbox.exposed_upto = mailbox.exposed_upto.max(last);
        let first_time: Vec<u64> = out
            .iter()
            .map(|(id, _, _)| *id)
            .filter(|id| *id > mailbox.reported_sent)
            .collect();
        mailbox.reported_sent = mailbox.reported_sent.max(last);
        for id in first_time {
            self.emit(Event::Sent {
                nick: nick.clone(),
                id,
            });
        }
        out
    }

    /// A cumulative acknowledgement from `nick` up to `upto`: each message it covers is
    /// stored as delivered, then reported.
    pub(super) fn acknowledged(&mut self, nick: &Nick, upto: u64) {
        // Only what we transmitted can be acknowledged: an acknowledgement beyond it is a
        // peer lying, and must not turn into a false receipt.
        let exposed = self.mailboxes.get(nick).map_or(0, |m| m.exposed_upto);
        let done: Vec<u64> = self
            .state
            .queued(nick)
            .map(|m| m.id)
            .take_while(|id| *id <= upto.min(exposed))
            .collect();
        for id in done {
            self.resolve(nick, id, Outcome::Delivered);
        }
    }

    /// Stores a message's end, then tells the user.
    pub(super) fn resolve(&mut self, nick: &Nick, id: u64, outcome: Outcome) {
        self.store(StoreOp::Resolved {
            to: nick.clone(),
            id,
            outcome: outcome.clone(),
        });
        self.emit(match outcome {
            Outcome::Delivered => Event::Delivered {
                nick: nick.clone(),
                id,
            },
            Outcome::Failed(reason) => Event::Failed {
                nick: nick.clone(),
                id,
                reason,
            },
        });
    }

    /// Fails every message queued for `nick` with an id up to `upto`.
    fn fail_queued_upto(&mut self, nick: &Nick, upto: u64, reason: &str) {
        let ids: Vec<u64> = self
            .state
            .queued(nick)
            .map(|m| m.id)
            .take_while(|id| *id <= upto)
            .collect();
        for id in ids {
            self.resolve(nick, id, Outcome::Failed(reason.to_owned()));
        }
    }

    /// Fails every message queued for `nick`.
    pub(super) fn fail_queued(&mut self, nick: &Nick, reason: &str) {
        let ids: Vec<u64> = self.state.queued(nick).map(|m| m.id).collect();
        for id in ids {
            self.resolve(nick, id, Outcome::Failed(reason.to_owned()));
        }
    }

    /// The contact announced `instance` in a handshake. A new instance means the contact
    /// lost its store (its ids restart): our de-duplication mark for it resets, and the
    /// messages its previous instance may have shown are failed rather than sent again
    /// (at most once, never twice).
    pub(super) fn peer_instance(&mut self, nick: &Nick, instance: u64) {
        let Some(contact) = self.state.contacts.get(nick) else {
            debug_assert!(false, "a chat connected with {nick}, who is not a contact");
            return;
        };
        if contact.peer_instance == Some(instance) {
            return;
        }
        let had_previous = contact.peer_instance.is_some();
        let mut record = contact.clone();
        record.peer_instance = Some(instance);
        record.received_upto = 0;
        self.store(StoreOp::Contact(record));
        let exposed = self
            .mailboxes
            .get_mut(nick)
            .map_or(0, |m| core::mem::take(&mut m.exposed_upto));
        if !had_previous {
            return;
        }
        self.fail_queued_upto(
            nick,
            exposed,
            "the contact lost its message store before acknowledging it (it may have been shown)",
        );
    }

    /// The contact says it stored our ids up to `stored_upto`, the last with `nonce` (its
    /// first message on a connection). If that is not a message this store knows under
    /// that id — an id we never numbered, or another message under one we did — this
    /// store is an older copy of itself (restored from a backup, or rolled back) and went
    /// on numbering from where the copy was: the contact already holds other messages
    /// under ids we used or would use. Our counter moves past them, and the queued
    /// messages among them are failed: the contact holds *a* message under each of those
    /// ids, which may be this one (sent before the copy was taken) or another, so neither
    /// "delivered" nor a resend under the same id would be true.
    pub(super) fn resumed(&mut self, nick: &Nick, stored_upto: u64, nonce: u64) {
        let Some(contact) = self.state.contacts.get(nick) else {
            debug_assert!(false, "a chat connected with {nick}, who is not a contact");
            return;
        };
        // 0 on either side: a message from before nonces, taken on trust.
        let same = |ours: u64| ours == nonce || ours == 0 || nonce == 0;
        let known = stored_upto == 0
            || (stored_upto < contact.next_id
                && match self.state.queued(nick).find(|m| m.id == stored_upto) {
                    Some(m) => same(m.nonce),
                    None if stored_upto == contact.delivered_upto => same(contact.delivered_nonce),
                    // It stored one we gave up on before its acknowledgement came.
                    None if stored_upto == contact.failed_upto => same(contact.failed_nonce),
                    // Behind what it acknowledged: the contact's store is the older one,
                    // and our next ids are new to it.
                    None => stored_upto < contact.delivered_upto,
                });
        if known {
            return;
        }
        let mut record = contact.clone();
        record.next_id = record.next_id.max(stored_upto.saturating_add(1));
        self.store(StoreOp::Contact(record));
        self.emit(Event::StoreBehindContact {
            nick: nick.clone(),
            stored_upto,
        });
        let reason = format!(
            "this data directory is an older copy (restored from a backup?) and {nick} already \
             has messages up to #{stored_upto} from it: this one may or may not have arrived; \
             send it again if needed"
        );
        self.fail_queued_upto(nick, stored_upto, &reason);
    }

    /// Classifies message `id` from `nick`'s current instance.
    pub(super) fn classify_received(&self, nick: &Nick, id: u64) -> Receipt {
        match self.state.contacts.get(nick) {
            Some(c) if id > c.received_upto => Receipt::Deliver,
            _ => Receipt::Duplicate,
        }
    }

    /// Highest id stored from `nick`'s current instance.
    pub(super) fn received_upto(&self, nick: &Nick) -> u64 {
        self.state.contacts.get(nick).map_or(0, |c| c.received_upto)
    }
}
