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
    /// The sender's disk was put back to a copy taken before it was sent: the user
    /// restored an older backup, and the message went with everything after it.
    ForgottenByRestore,
}

#[derive(Debug)]
struct Message {
    from: usize,
    to: usize,
    /// Showings on the recipient's disk now.
    received: u32,
    /// Whether it was ever shown (a recipient put back to an older disk forgets a
    /// showing, but the showing happened: a receipt for it is true).
    ever_shown: bool,
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
    /// Every showing, in order: (its sequence number, recipient, global number), so that
    /// a recipient put back to an older disk forgets what it was shown after the copy.
    receptions: Vec<(u64, usize, u64)>,
    next_reception: u64,
    pub(crate) forgotten_by_restore: u64,
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
            ever_shown: false,
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
        m.ever_shown = true;
        self.receptions.push((self.next_reception, at, number));
        self.next_reception += 1;
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
            if m.received > 1 || !m.ever_shown {
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

    /// What peer `who`'s disk holds now, as far as the ledger is concerned: taken with a
    /// copy of the disk, and handed back to [`Ledger::restored`] if the disk is put back.
    pub(crate) fn mark(&self, who: usize) -> LedgerMark {
        LedgerMark {
            next_reception: self.next_reception,
            open: self
                .by_sender_id
                .range((who, 0, 0)..=(who, usize::MAX, u64::MAX))
                .map(|((_, to, id), n)| ((*to, *id), *n))
                .collect(),
            last_received: self
                .last_received
                .iter()
                .filter(|((_, to), _)| *to == who)
                .map(|(k, n)| (*k, *n))
                .collect(),
        }
    }

    /// Peer `who`'s disk was put back to the copy `mark` was taken with, whose outbox holds
    /// `queued` (recipient, id). What it was shown since is no longer on its disk (shown
    /// again, it is not a duplicate); what it sent since is forgotten with the copy (not
    /// lost: the user chose the older copy); what the copy still has queued is unresolved
    /// again, whatever became of it meanwhile, and must be resolved again.
    pub(crate) fn restored(
        &mut self,
        who: usize,
        mark: &LedgerMark,
        queued: &std::collections::BTreeSet<(usize, u64)>,
    ) {
        let messages = &mut self.messages;
        self.receptions.retain(|&(seq, at, number)| {
            let forget = at == who && seq >= mark.next_reception;
            if forget && let Some(m) = messages.get_mut(number as usize) {
                m.received = m.received.saturating_sub(1);
            }
            !forget
        });
        self.last_received.retain(|(_, to), _| *to != who);
        self.last_received
            .extend(mark.last_received.iter().copied());
        let now_open: Vec<((usize, usize, u64), u64)> = self
            .by_sender_id
            .range((who, 0, 0)..=(who, usize::MAX, u64::MAX))
            .map(|(k, n)| (*k, *n))
            .collect();
        for (key, number) in now_open {
            if mark.open.get(&(key.1, key.2)) == Some(&number) && queued.contains(&(key.1, key.2)) {
                continue;
            }
            self.by_sender_id.remove(&key);
            if let Some(m) = self.messages.get_mut(number as usize) {
                m.fate = Fate::ForgottenByRestore;
                self.pending -= 1;
                self.forgotten_by_restore += 1;
            }
        }
        for (&(to, id), &number) in &mark.open {
            if !queued.contains(&(to, id)) || self.by_sender_id.contains_key(&(who, to, id)) {
                continue;
            }
            let Some(m) = self.messages.get_mut(number as usize) else {
                continue;
            };
            match m.fate {
                Fate::Delivered => self.delivered -= 1,
                Fate::Failed => self.failed -= 1,
                Fate::ForgottenByRestore => self.forgotten_by_restore -= 1,
                Fate::LostInCrash => self.lost_in_crash -= 1,
                Fate::Pending => continue,
            }
            m.fate = Fate::Pending;
            self.pending += 1;
            self.by_sender_id.insert((who, to, id), number);
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

/// A peer's place in the ledger when a copy of its disk was taken ([`Ledger::mark`]).
#[derive(Debug, Clone)]
pub(crate) struct LedgerMark {
    next_reception: u64,
    /// Its unresolved messages then: (recipient, id) → global number.
    open: BTreeMap<(usize, u64), u64>,
    last_received: Vec<((usize, usize), u64)>,
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
    fn a_disk_put_back_forgets_what_came_after_its_copy_and_reopens_what_it_still_queues() {
        let mut l = Ledger::default();
        let kept = l.next_text(10);
        l.sent(0, 1, 1, &kept);
        let mark = l.mark(0);
        let later = l.next_text(10);
        l.sent(0, 1, 2, &later);
        l.received(1, 0, &kept);
        l.resolved(0, 1, 1, true);
        // Peer 0 goes back to the copy: #1 is queued there again, #2 never happened.
        l.restored(0, &mark, &std::collections::BTreeSet::from([(1, 1)]));
        assert_eq!((l.pending, l.delivered, l.forgotten_by_restore), (1, 0, 1));
        l.restarted(0, &std::collections::BTreeSet::from([(1, 1)]));
        l.resolved(0, 1, 1, true);
        assert_eq!(l.violation_count, 0);
        // Peer 1 goes back to a copy taken before it was shown #1: shown again, it is
        // not a duplicate.
        let mut l2 = Ledger::default();
        let text = l2.next_text(10);
        l2.sent(0, 1, 1, &text);
        let before = l2.mark(1);
        l2.received(1, 0, &text);
        l2.restored(1, &before, &std::collections::BTreeSet::new());
        l2.received(1, 0, &text);
        assert_eq!(l2.duplicates, 0);
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
