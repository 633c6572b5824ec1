//! The ledger: every message the workload sends, what became of it, and the invariants
//! checked as events happen. The simulator knows the truth (who sent what to whom); the
//! ledger compares what the peers report with it.

use std::collections::BTreeMap;

use p2pchat_core::nick::Nick;

/// A peer incarnation: peer index and how many times it (re)started.
pub(crate) type Incarnation = (usize, u32);

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Neither delivered nor failed yet.
    Pending,
    /// The sender was told it was delivered.
    Delivered,
    /// The sender was told it failed.
    Failed,
    /// The sender crashed before it was resolved.
    LostInCrash,
}

#[derive(Debug)]
struct Message {
    from: Incarnation,
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
    /// (sender incarnation, recipient, sender's message id) → global number.
    by_sender_id: BTreeMap<(Incarnation, usize, u64), u64>,
    /// (sender incarnation, recipient incarnation) → last global number received.
    last_received: BTreeMap<(Incarnation, Incarnation), u64>,
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

    /// `from` sent `text` (made by `next_text`) to peer `to`; the core gave it `id`.
    pub(crate) fn sent(&mut self, from: Incarnation, to: usize, id: u64) -> u64 {
        let number = self.messages.len() as u64;
        self.messages.push(Message {
            from,
            to,
            received: 0,
            fate: Fate::Pending,
        });
        self.pending += 1;
        if self.by_sender_id.insert((from, to, id), number).is_some() {
            self.violation(format!(
                "peer {} reused message id {id} towards peer {to} while it was unresolved",
                from.0
            ));
        }
        number
    }

    /// Peer incarnation `at` was shown `text` as coming from peer `from_peer`.
    pub(crate) fn received(&mut self, at: Incarnation, from_peer: usize, text: &str) {
        let number = text
            .strip_prefix('#')
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        let Some(number) = number.filter(|n| *n < self.messages.len() as u64) else {
            return self.violation(format!(
                "peer {} was shown a message nobody sent: {text:.40?}",
                at.0
            ));
        };
        let m = &mut self.messages[number as usize];
        if m.to != at.0 || m.from.0 != from_peer {
            let (to, from) = (m.to, m.from.0);
            return self.violation(format!(
                "message #{number} from peer {from} to peer {to} was shown to peer {} as from peer {from_peer}",
                at.0
            ));
        }
        m.received += 1;
        let (from, times) = (m.from, m.received);
        if times > 1 {
            self.duplicates += 1;
            self.violation(format!(
                "message #{number} was shown to peer {} {times} times",
                at.0
            ));
        }
        let last = self.last_received.entry((from, at)).or_insert(0);
        if number < *last {
            self.out_of_order += 1;
            let last = *last;
            self.violation(format!(
                "message #{number} reached peer {} after #{last}",
                at.0
            ));
        } else {
            *last = number;
        }
    }

    /// The sender was told message `id` to `to` was delivered (`true`) or failed.
    pub(crate) fn resolved(&mut self, from: Incarnation, to: usize, id: u64, delivered: bool) {
        let Some(number) = self.by_sender_id.remove(&(from, to, id)) else {
            return self.violation(format!(
                "peer {} was told about message {id} to peer {to}, which it never sent (or was told twice)",
                from.0
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

    /// Peer incarnation `who` crashed: what it had not resolved is lost with it.
    pub(crate) fn crashed(&mut self, who: Incarnation) {
        let keys: Vec<_> = self
            .by_sender_id
            .range((who, 0, 0)..=(who, usize::MAX, u64::MAX))
            .map(|(k, n)| (*k, *n))
            .collect();
        for (key, number) in keys {
            self.by_sender_id.remove(&key);
            if let Some(m) = self.messages.get_mut(number as usize) {
                m.fate = Fate::LostInCrash;
                self.pending -= 1;
                self.lost_in_crash += 1;
            }
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
        l.sent((0, 0), 1, 1);
        l.received((1, 0), 0, &text);
        l.received((1, 0), 0, &text);
        assert_eq!(l.duplicates, 1);
        assert_eq!(l.violation_count, 1);
    }

    #[test]
    fn delivered_without_being_shown_is_a_violation() {
        let mut l = Ledger::default();
        l.sent((0, 0), 1, 1);
        l.resolved((0, 0), 1, 1, true);
        assert_eq!(l.violation_count, 1);
        assert_eq!(l.pending, 0);
    }

    #[test]
    fn a_crash_turns_pending_messages_into_lost_in_crash() {
        let mut l = Ledger::default();
        l.sent((0, 0), 1, 1);
        l.sent((0, 0), 2, 1);
        l.sent((3, 0), 2, 1);
        l.crashed((0, 0));
        assert_eq!(l.lost_in_crash, 2);
        assert_eq!(l.pending, 1);
        l.check_settled();
        assert_eq!(l.violation_count, 1);
    }

    #[test]
    fn out_of_order_reception_is_counted() {
        let mut l = Ledger::default();
        let first = l.next_text(10);
        l.sent((0, 0), 1, 1);
        let second = l.next_text(10);
        l.sent((0, 0), 1, 2);
        l.received((1, 0), 0, &second);
        l.received((1, 0), 0, &first);
        assert_eq!(l.out_of_order, 1);
    }
}
