//! The ledger: every message the workload sends, what became of it, and the invariants
//! checked as events happen. The simulator knows the truth (who sent what to whom); the
//! ledger compares what the peers store with it.
//!
//! A message counts as sent when its sender's disk holds it (the outbox entry), as shown
//! when its recipient's disk holds it (the history entry a user reads, also after a
//! crash), and as resolved when the sender's disk records its outcome: that is what a user
//! of the real program sees after any crash.

use std::collections::BTreeMap;

use p2pchat_core::nick::Nick;

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Neither delivered nor failed yet.
    Pending,
    /// The sender was told it was delivered.
    Delivered,
    /// The sender was told it failed.
    Failed,
    /// The sender lost it: unresolved, and not on its disk after a crash (a bug).
    LostInCrash,
}

#[derive(Debug)]
struct Message {
    from: usize,
    to: usize,
    received: u32,
    fate: Fate,
}

/// One broken invariant, with when it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The world step (events processed) at which it was seen.
    pub step: u64,
    /// Virtual time in milliseconds.
    pub virtual_ms: u64,
    /// What went wrong.
    pub what: String,
}

/// Counters and invariant checks.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    messages: Vec<Message>,
    /// (sender, recipient, sender's message id) → global number, while unresolved.
    by_sender_id: BTreeMap<(usize, usize, u64), u64>,
    /// (sender, recipient) → last global number received.
    last_received: BTreeMap<(usize, usize), u64>,
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) lost_in_crash: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    pub(crate) pending: u64,
    pub(crate) violations: Vec<Violation>,
    pub(crate) violation_count: u64,
    /// Where the world is, for violation reports.
    pub(crate) step: u64,
    pub(crate) virtual_ms: u64,
}

/// Most violations kept in full (all are counted).
const KEPT_VIOLATIONS: usize = 20;

impl Ledger {
    /// Records a violation.
    pub(crate) fn violation(&mut self, what: String) {
        self.violation_count += 1;
        if self.violations.len() < KEPT_VIOLATIONS {
            self.violations.push(Violation {
                step: self.step,
                virtual_ms: self.virtual_ms,
                what,
            });
        }
    }

    /// The text of the next message from `from` to `to`: its global number first, so the
    /// receiver's copy can be traced back, then filler of `len` bytes.
    pub(crate) fn next_text(&self, len: usize) -> String {
        let mut text = format!("#{} ", self.messages.len());
        while text.len() < len {
            text.push_str("lorem ipsum ");
        }
        text.truncate(len.max(text.find(' ').unwrap_or(0) + 1));
        text
    }

    /// The number `next_text` wrote at the start of `text`.
    pub(crate) fn number_of(text: &str) -> Option<u64> {
        text.strip_prefix('#')
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    }

    /// Peer `from` stored `text` (made by `next_text`) for peer `to` under `id`.
    pub(crate) fn sent(&mut self, from: usize, to: usize, id: u64, text: &str) {
        let number = self.messages.len() as u64;
        if Self::number_of(text) != Some(number) {
            return self.violation(format!(
                "peer {from} stored a message that was not the next one sent: {text:.40?}"
            ));
        }
        self.messages.push(Message {
            from,
            to,
            received: 0,
            fate: Fate::Pending,
        });
        self.pending += 1;
        if self.by_sender_id.insert((from, to, id), number).is_some() {
            self.violation(format!(
                "peer {from} reused message id {id} towards peer {to} while it was unresolved"
            ));
        }
    }

    /// Peer `at` stored (and so showed) `text` as coming from peer `from_peer`.
    pub(crate) fn received(&mut self, at: usize, from_peer: usize, text: &str) {
        let number = Self::number_of(text);
        let Some(number) = number.filter(|n| *n < self.messages.len() as u64) else {
            return self.violation(format!(
                "peer {at} was shown a message nobody sent: {text:.40?}"
            ));
        };
        let m = &mut self.messages[number as usize];
        if m.to != at || m.from != from_peer {
            let (to, from) = (m.to, m.from);
            return self.violation(format!(
                "message #{number} from peer {from} to peer {to} was shown to peer {at} as from peer {from_peer}"
            ));
        }
        m.received += 1;
        let (from, times) = (m.from, m.received);
        if times > 1 {
            self.duplicates += 1;
            self.violation(format!(
                "message #{number} was shown to peer {at} {times} times"
            ));
        }
        let last = self.last_received.entry((from, at)).or_insert(0);
        if number < *last {
            self.out_of_order += 1;
            let last = *last;
            self.violation(format!("message #{number} reached peer {at} after #{last}"));
        } else {
            *last = number;
        }
    }

    /// The sender was told message `id` to `to` was delivered (`true`) or failed.
    pub(crate) fn resolved(&mut self, from: usize, to: usize, id: u64, delivered: bool) {
        let Some(number) = self.by_sender_id.remove(&(from, to, id)) else {
            return self.violation(format!(
                "peer {from} resolved message {id} to peer {to}, which it never sent (or resolved it twice)"
            ));
        };
        let Some(m) = self.messages.get_mut(number as usize) else {
            return;
        };
        m.fate = if delivered {
            Fate::Delivered
        } else {
            Fate::Failed
        };
        self.pending -= 1;
        if delivered {
            self.delivered += 1;
            if m.received != 1 {
                let n = m.received;
                self.violation(format!(
                    "message #{number} was reported delivered but shown {n} times"
                ));
            }
        } else {
            self.failed += 1;
        }
    }

    /// Peer `who` restarted from a disk whose outbox holds `queued` (recipient, id): any
    /// unresolved message of `who` not among them was lost.
    pub(crate) fn restarted(
        &mut self,
        who: usize,
        queued: &std::collections::BTreeSet<(usize, u64)>,
    ) {
        let keys: Vec<_> = self
            .by_sender_id
            .range((who, 0, 0)..=(who, usize::MAX, u64::MAX))
            .filter(|((_, to, id), _)| !queued.contains(&(*to, *id)))
            .map(|(k, n)| (*k, *n))
            .collect();
        for (key, number) in keys {
            self.by_sender_id.remove(&key);
            if let Some(m) = self.messages.get_mut(number as usize) {
                m.fate = Fate::LostInCrash;
                self.pending -= 1;
                self.lost_in_crash += 1;
            }
            self.violation(format!(
                "message #{number} of peer {who} was accepted but is gone from its disk after a restart"
            ));
        }
    }

    /// Number of messages sent.
    pub(crate) fn sent_count(&self) -> u64 {
        self.messages.len() as u64
    }

    /// What became of message `number`, and how often it was shown.
    pub(crate) fn fate(&self, number: u64) -> Option<(Fate, u32)> {
        self.messages
            .get(number as usize)
            .map(|m| (m.fate, m.received))
    }

    /// After the world settled: every message still pending is a violation.
    pub(crate) fn check_settled(&mut self) {
        let hanging: Vec<u64> = self
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.fate == Fate::Pending)
            .map(|(n, _)| n as u64)
            .collect();
        for number in hanging.iter().take(5) {
            self.violation(format!(
                "message #{number} is neither delivered nor failed after the world settled"
            ));
        }
        if hanging.len() > 5 {
            self.violation(format!("… and {} more hanging messages", hanging.len() - 5));
        }
    }
}

/// Checks one page of users: no nick and no onion listed twice.
pub(crate) fn page_is_unique(nicks: impl Iterator<Item = (Nick, String)>) -> Option<String> {
    let mut seen_nicks = std::collections::BTreeSet::new();
    let mut seen_onions = std::collections::BTreeSet::new();
    for (nick, onion) in nicks {
        if !seen_nicks.insert(nick.canonical()) {
            return Some(format!("the registry listed {nick} twice"));
        }
        if !seen_onions.insert(onion.clone()) {
            return Some(format!("the registry listed onion {onion} twice"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_shown_twice_is_a_duplicate_and_a_violation() {
        let mut l = Ledger::default();
        let text = l.next_text(30);
        l.sent(0, 1, 1, &text);
        l.received(1, 0, &text);
        l.received(1, 0, &text);
        assert_eq!(l.duplicates, 1);
        assert_eq!(l.violation_count, 1);
    }

    #[test]
    fn delivered_without_being_shown_is_a_violation() {
        let mut l = Ledger::default();
        let text = l.next_text(30);
        l.sent(0, 1, 1, &text);
        l.resolved(0, 1, 1, true);
        assert_eq!(l.violation_count, 1);
        assert_eq!(l.pending, 0);
    }

    #[test]
    fn an_accepted_message_missing_from_the_disk_after_a_restart_is_lost_and_a_violation() {
        let mut l = Ledger::default();
        for (from, to, id) in [(0, 1, 1), (0, 2, 1), (3, 2, 1)] {
            let text = l.next_text(10);
            l.sent(from, to, id, &text);
        }
        // Peer 0's disk still holds its message to peer 1, not the one to peer 2.
        let on_disk = std::collections::BTreeSet::from([(1, 1)]);
        l.restarted(0, &on_disk);
        assert_eq!(l.lost_in_crash, 1);
        assert_eq!(l.pending, 2);
        assert_eq!(l.violation_count, 1);
    }

    #[test]
    fn a_stored_message_that_is_not_the_next_one_sent_is_a_violation() {
        let mut l = Ledger::default();
        l.sent(0, 1, 1, "#7 made up");
        assert_eq!(l.violation_count, 1);
        assert_eq!(l.sent_count(), 0);
    }

    #[test]
    fn out_of_order_reception_is_counted() {
        let mut l = Ledger::default();
        let first = l.next_text(10);
        l.sent(0, 1, 1, &first);
        let second = l.next_text(10);
        l.sent(0, 1, 2, &second);
        l.received(1, 0, &second);
        l.received(1, 0, &first);
        assert_eq!(l.out_of_order, 1);
    }
}
