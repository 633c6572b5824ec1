//! One chat's message bookkeeping, independent of connections: the outbox of messages not
//! yet acknowledged (resent after a reconnection) and the inbox's de-duplication.

use std::collections::VecDeque;

/// What to do with a received message.
#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    /// New: deliver it to the user, then acknowledge.
    Deliver,
    /// Seen before (a resend): acknowledge again, do not deliver.
    Duplicate,
}

/// Message ids and buffers of one chat.
#[derive(Debug)]
pub struct Mailbox {
    /// Our instance: the peer scopes our message ids to it.
    pub instance: u64,
    next_id: u64,
    /// Sent (or queued), not yet acknowledged, oldest first.
    unacked: VecDeque<(u64, String)>,
    /// Highest id transmitted on the current connection (0 = none).
    transmitted: u64,
    peer_instance: Option<u64>,
    received_upto: u64,
    /// Highest id ever transmitted to the current peer instance: if that instance goes
    /// away unacknowledged, it may have shown these messages before it did.
    exposed_upto: u64,
}

impl Mailbox {
    /// An empty mailbox for our chat instance `instance`.
    pub fn new(instance: u64) -> Self {
        Self {
            instance,
            next_id: 1,
            unacked: VecDeque::new(),
            transmitted: 0,
            peer_instance: None,
            received_upto: 0,
            exposed_upto: 0,
        }
    }

    /// Takes `instance` as ours if no message has reached any peer yet (so no id was ever
    /// scoped to the old one). Returns whether the mailbox now has that instance.
    pub fn adopt_instance(&mut self, instance: u64) -> bool {
        if self.peer_instance.is_none() && self.exposed_upto == 0 {
            self.instance = instance;
        }
        self.instance == instance
    }

    /// Queues a message; returns its id.
    pub fn push(&mut self, text: String) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.unacked.push_back((id, text));
        id
    }

    /// Messages not yet acknowledged.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Messages queued but not yet transmitted on the current connection; marks them sent.
    pub fn take_untransmitted(&mut self) -> Vec<(u64, String)> {
        let from = self.transmitted;
        let out: Vec<_> = self
            .unacked
            .iter()
            .filter(|(id, _)| *id > from)
            .cloned()
            .collect();
        if let Some((last, _)) = out.last() {
            self.transmitted = *last;
            self.exposed_upto = self.exposed_upto.max(*last);
        }
        out
    }

    /// The connection changed: everything unacknowledged must be sent again.
    pub fn connection_lost(&mut self) {
        self.transmitted = 0;
    }

    /// Handles a cumulative acknowledgement; returns the ids newly delivered.
    pub fn ack(&mut self, upto: u64) -> Vec<u64> {
        let mut done = Vec::new();
        while let Some((id, _)) = self.unacked.front() {
            if *id > upto {
                break;
            }
            done.push(*id);
            self.unacked.pop_front();
        }
        done
    }

    /// Every unacknowledged id, removed (the chat ended).
    pub fn fail_all(&mut self) -> Vec<u64> {
        self.unacked.drain(..).map(|(id, _)| id).collect()
    }

    /// The peer announced its instance for this connection. A new instance means the peer
    /// started over (its ids restart), so our de-duplication state for it resets.
    ///
    /// Returns the unacknowledged messages that were transmitted to the previous instance:
    /// it may have shown them before it went away, so sending them again could show them
    /// twice. They are removed; the caller reports them failed (at most once, never twice).
    pub fn peer_instance(&mut self, instance: u64) -> Vec<u64> {
        if self.peer_instance == Some(instance) {
            return Vec::new();
        }
        let had_previous = self.peer_instance.is_some();
        self.peer_instance = Some(instance);
        self.received_upto = 0;
        let exposed = core::mem::take(&mut self.exposed_upto);
        if !had_previous {
            return Vec::new();
        }
        let mut doubtful = Vec::new();
        while let Some((id, _)) = self.unacked.front() {
            if *id > exposed {
                break;
            }
            doubtful.push(*id);
            self.unacked.pop_front();
        }
        doubtful
    }

    /// Classifies a received message id.
    pub fn receive(&mut self, id: u64) -> Receipt {
        if id <= self.received_upto {
            Receipt::Duplicate
        } else {
            self.received_upto = id;
            Receipt::Deliver
        }
    }

    /// Highest id received from the peer's current instance.
    pub fn received_upto(&self) -> u64 {
        self.received_upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacknowledged_messages_are_retransmitted_after_a_lost_connection() {
        let mut m = Mailbox::new(1);
        m.push("a".into());
        m.push("b".into());
        assert_eq!(m.take_untransmitted().len(), 2);
        assert!(m.take_untransmitted().is_empty());
        assert_eq!(m.ack(1), vec![1]);
        m.connection_lost();
        assert_eq!(m.take_untransmitted(), vec![(2, "b".to_string())]);
    }

    #[test]
    fn receiver_delivers_each_id_once_and_resets_on_a_new_peer_instance() {
        let mut m = Mailbox::new(1);
        m.peer_instance(7);
        assert_eq!(m.receive(1), Receipt::Deliver);
        assert_eq!(m.receive(2), Receipt::Deliver);
        assert_eq!(m.receive(1), Receipt::Duplicate);
        assert_eq!(m.receive(2), Receipt::Duplicate);
        m.peer_instance(7);
        assert_eq!(m.receive(2), Receipt::Duplicate);
        m.peer_instance(8);
        assert_eq!(m.receive(1), Receipt::Deliver);
    }

    #[test]
    fn messages_transmitted_to_a_restarted_peer_are_given_up_not_resent() {
        let mut m = Mailbox::new(1);
        assert!(m.peer_instance(7).is_empty());
        m.push("a".into());
        m.push("b".into());
        assert_eq!(m.take_untransmitted().len(), 2);
        m.connection_lost();
        m.push("c".into());
        // The peer came back as another instance: a and b may have been shown already.
        assert_eq!(m.peer_instance(8), vec![1, 2]);
        assert_eq!(m.take_untransmitted(), vec![(3, "c".to_string())]);
        // The same instance reconnecting keeps everything for resending.
        m.connection_lost();
        assert!(m.peer_instance(8).is_empty());
        assert_eq!(m.take_untransmitted(), vec![(3, "c".to_string())]);
    }

    #[test]
    fn fail_all_reports_every_pending_id() {
        let mut m = Mailbox::new(1);
        m.push("a".into());
        m.push("b".into());
        assert_eq!(m.fail_all(), vec![1, 2]);
        assert_eq!(m.unacked_len(), 0);
    }
}
