//! Presence for subscribers, coalesced.
//!
//! Every change of who is online is appended to one bounded log, and each subscriber holds
//! only a cursor into it (8 bytes, not a queue of records). At most once per flush interval,
//! a subscriber that is behind gets one frame naming each nick that changed after its
//! cursor, with the nick's state at that moment: a nick that joined and left in between is
//! sent once, as left. A subscriber that fell off the start of the log, or whose frame the
//! runtime dropped because it was not reading, gets `Presence::Resync` instead.
//!
//! So a presence storm costs each subscriber at most one frame per interval, however many
//! changes it holds, and is never a reason to disconnect anyone.

use std::collections::{BTreeMap, VecDeque};

use crate::conn::ConnId;
use crate::nick::Nick;

/// Most nicks in one presence frame. A record is at most about 600 bytes (a 3072-bit key,
/// a 32-byte nick), so a full batch stays well under a frame.
pub(super) const MAX_BATCH: usize = 64;

/// One change of who is online: `nick` joined or left, caused by connection `by` (which is
/// never told of it: it knows).
struct Change {
    nick: Nick,
    by: ConnId,
}

/// Where a subscriber is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Subscription {
    /// Sequence number of the first change it has not been sent.
    cursor: u64,
    /// It missed changes (its frame was dropped): it is sent `Resync`, not changes.
    resync: bool,
}

/// What one subscriber is sent next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing: it has everything.
    Nothing,
    /// It missed changes it cannot be told of.
    Resync,
    /// The changes after its cursor.
    Changes {
        /// Its cursor, which names the batch (subscribers at one cursor share it).
        cursor: u64,
    },
}

/// The changes after one cursor, one entry per nick.
pub(super) struct Batch {
    /// Each changed nick once (in the order it first changed), and the connection that
    /// caused its latest change.
    pub(super) changes: Vec<(Nick, ConnId)>,
    /// The cursor after this batch.
    pub(super) next: u64,
}

/// The log of changes, bounded.
pub(super) struct PresenceLog {
    changes: VecDeque<Change>,
    /// Sequence number of `changes[0]`.
    first: u64,
    capacity: usize,
}

impl PresenceLog {
    /// A log that keeps the last `capacity` changes.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            changes: VecDeque::with_capacity(capacity.min(4096)),
            first: 0,
            capacity: capacity.max(1),
        }
    }

    /// Sequence number of the next change.
    pub(super) fn head(&self) -> u64 {
        self.first + self.changes.len() as u64
    }

    /// A subscription from now on: earlier changes are not sent.
    pub(super) fn subscribe(&self) -> Subscription {
        Subscription {
            cursor: self.head(),
            resync: false,
        }
    }

    /// `nick` joined or left because of connection `by`.
    pub(super) fn record(&mut self, nick: Nick, by: ConnId) {
        self.changes.push_back(Change { nick, by });
        if self.changes.len() > self.capacity {
            self.changes.pop_front();
            self.first += 1;
        }
    }

    /// What `s` is due.
    pub(super) fn due(&self, s: &Subscription) -> Due {
        if s.resync || s.cursor < self.first {
            Due::Resync
        } else if s.cursor < self.head() {
            Due::Changes { cursor: s.cursor }
        } else {
            Due::Nothing
        }
    }

    /// The changes after `cursor` (which must be in the log), up to [`MAX_BATCH`] nicks.
    pub(super) fn batch(&self, cursor: u64) -> Batch {
        debug_assert!(cursor >= self.first && cursor <= self.head());
        let skip = usize::try_from(cursor.saturating_sub(self.first)).unwrap_or(usize::MAX);
        let mut changes: Vec<(Nick, ConnId)> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut next = cursor;
        for change in self.changes.iter().skip(skip) {
            let key = change.nick.canonical();
            match index.get(&key) {
                Some(&i) => changes[i].1 = change.by,
                None if changes.len() == MAX_BATCH => break,
                None => {
                    index.insert(key, changes.len());
                    changes.push((change.nick.clone(), change.by));
                }
            }
            next += 1;
        }
        Batch { changes, next }
    }

    /// `s` was sent what it was due: it is at `cursor` now.
    pub(super) fn sent(s: &mut Subscription, cursor: u64) {
        s.cursor = cursor;
        s.resync = false;
    }

    /// `s` missed a frame: it is sent `Resync` next, and nothing before it.
    pub(super) fn dropped(&self, s: &mut Subscription) {
        s.cursor = self.head();
        s.resync = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    #[test]
    fn a_nick_that_changed_many_times_is_sent_once_with_its_latest_cause() {
        let mut log = PresenceLog::new(100);
        let s = log.subscribe();
        for i in 0..10 {
            log.record(nick("alice"), ConnId(i));
            log.record(nick("bob"), ConnId(100));
        }
        let Due::Changes { cursor } = log.due(&s) else {
            panic!("a subscriber behind the log is due its changes");
        };
        let batch = log.batch(cursor);
        assert_eq!(
            batch.changes,
            vec![(nick("alice"), ConnId(9)), (nick("bob"), ConnId(100))]
        );
        assert_eq!(batch.next, 20);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_nicks_and_the_rest_waits() {
        let mut log = PresenceLog::new(1000);
        let mut s = log.subscribe();
        for i in 0..(MAX_BATCH + 5) {
            log.record(nick(&format!("n{i}")), ConnId(0));
        }
        let first = log.batch(0);
        assert_eq!(first.changes.len(), MAX_BATCH);
        PresenceLog::sent(&mut s, first.next);
        let Due::Changes { cursor } = log.due(&s) else {
            panic!("the rest is still due");
        };
        assert_eq!(log.batch(cursor).changes.len(), 5);
    }

    #[test]
    fn a_subscriber_that_fell_off_the_log_or_missed_a_frame_is_due_a_resync() {
        let mut log = PresenceLog::new(4);
        let mut s = log.subscribe();
        for i in 0..5 {
            log.record(nick(&format!("n{i}")), ConnId(0));
        }
        assert_eq!(log.due(&s), Due::Resync);
        PresenceLog::sent(&mut s, 5);
        assert_eq!(log.due(&s), Due::Nothing);
        log.record(nick("late"), ConnId(0));
        log.dropped(&mut s);
        assert_eq!(log.due(&s), Due::Resync);
        PresenceLog::sent(&mut s, 6);
        assert_eq!(log.due(&s), Due::Nothing);
    }
}
