//! Registry lookups made for inbound handshakes. A stranger's `Hello` under a nick we never
//! talked to needs the registry's record of that nick, and anyone can send `Hello`s: so
//! these lookups are cached for a short while, joined when one for the same nick is in
//! flight, and limited by a token bucket. Beyond the budget a `Hello` is refused as busy
//! (the initiator retries later) instead of making us exceed the registry's rate limit,
//! which would cost us our own registration.

use core::time::Duration;
use std::collections::BTreeMap;

use super::token_bucket::TokenBucket;
use crate::conn::ConnId;
use crate::nick::Nick;
use crate::registry::UserRecord;
use crate::time::Instant;

/// How long an answer is reused: a record (the user is online there) and an absence.
const RECORD_TTL: Duration = Duration::from_secs(60);
const ABSENCE_TTL: Duration = Duration::from_secs(15);
/// Most answers kept.
const MAX_CACHED: usize = 256;
/// Most inbound connections waiting on one lookup.
const MAX_WAITING_PER_NICK: usize = 4;
/// Lookups that may be sent at once, and how fast the budget refills.
const BURST: u32 = 8;
const REFILL_EVERY: Duration = Duration::from_secs(4);

/// What to do with an inbound handshake that needs a lookup.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LookupPlan {
    /// Answered from the cache.
    Cached(Option<UserRecord>),
    /// A lookup for this nick is in flight: the connection waits for its answer.
    Joined,
    /// Send a lookup.
    Send,
    /// Over budget, or too many waiting: refuse the handshake as busy.
    Refuse,
}

/// Cache, waiting connections and budget of inbound lookups.
#[derive(Debug)]
pub(super) struct InboundLookups {
    cache: BTreeMap<Nick, (Option<UserRecord>, Instant)>,
    waiting: BTreeMap<Nick, Vec<ConnId>>,
    budget: TokenBucket,
}

impl InboundLookups {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            cache: BTreeMap::new(),
            waiting: BTreeMap::new(),
            budget: TokenBucket::full(BURST, REFILL_EVERY, now),
        }
    }

    /// Decides how inbound `conn`, claiming `nick`, gets its lookup answered.
    pub(super) fn plan(&mut self, now: Instant, nick: &Nick, conn: ConnId) -> LookupPlan {
        if let Some((record, expires)) = self.cache.get(nick) {
            if *expires > now {
                return LookupPlan::Cached(record.clone());
            }
            self.cache.remove(nick);
        }
        if let Some(waiting) = self.waiting.get_mut(nick) {
            if waiting.len() >= MAX_WAITING_PER_NICK {
                return LookupPlan::Refuse;
            }
            waiting.push(conn);
            return LookupPlan::Joined;
        }
        if !self.budget.take(now) {
            return LookupPlan::Refuse;
        }
        self.waiting.insert(nick.clone(), vec![conn]);
        LookupPlan::Send
    }

    /// The lookup of `nick` was answered: remembers it, and returns the connections that
    /// waited for it.
    pub(super) fn answered(
        &mut self,
        now: Instant,
        nick: &Nick,
        record: Option<&UserRecord>,
    ) -> Vec<ConnId> {
        let ttl = if record.is_some() {
            RECORD_TTL
        } else {
            ABSENCE_TTL
        };
        if self.cache.len() >= MAX_CACHED {
            self.cache.retain(|_, (_, expires)| *expires > now);
            if self.cache.len() >= MAX_CACHED {
                self.cache.pop_first();
            }
        }
        self.cache
            .insert(nick.clone(), (record.cloned(), now + ttl));
        self.waiting.remove(nick).unwrap_or_default()
    }

    /// The lookup of `nick` failed: the connections that waited for it.
    pub(super) fn failed(&mut self, nick: &Nick) -> Vec<ConnId> {
        self.waiting.remove(nick).unwrap_or_default()
    }

    /// The registry says `nick` came or went: a cached answer is stale.
    pub(super) fn forget(&mut self, nick: &Nick) {
        self.cache.remove(nick);
    }

    /// The registry says we missed presence: every cached answer may be stale.
    pub(super) fn forget_all(&mut self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    #[test]
    fn lookups_are_joined_cached_and_budgeted() {
        let mut l = InboundLookups::new(Instant::ZERO);
        let t = Instant::ZERO;
        assert_eq!(l.plan(t, &nick("a"), ConnId(1)), LookupPlan::Send);
        assert_eq!(l.plan(t, &nick("a"), ConnId(2)), LookupPlan::Joined);
        assert_eq!(l.answered(t, &nick("a"), None), vec![ConnId(1), ConnId(2)]);
        assert_eq!(l.plan(t, &nick("A"), ConnId(3)), LookupPlan::Cached(None));
        // The absence expires sooner than a record would.
        assert_eq!(
            l.plan(t + ABSENCE_TTL, &nick("a"), ConnId(4)),
            LookupPlan::Send
        );
    }

    #[test]
    fn lookups_beyond_the_budget_are_refused_until_it_refills() {
        let mut l = InboundLookups::new(Instant::ZERO);
        let t = Instant::ZERO;
        for i in 0..BURST {
            let n = nick(&format!("n{i}"));
            assert_eq!(l.plan(t, &n, ConnId(u64::from(i))), LookupPlan::Send);
        }
        assert_eq!(l.plan(t, &nick("x"), ConnId(99)), LookupPlan::Refuse);
        assert_eq!(
            l.plan(t + REFILL_EVERY, &nick("x"), ConnId(99)),
            LookupPlan::Send
        );
        assert_eq!(
            l.plan(t + REFILL_EVERY, &nick("y"), ConnId(100)),
            LookupPlan::Refuse
        );
    }

    #[test]
    fn few_connections_wait_on_one_nick_and_the_cache_is_bounded() {
        let mut l = InboundLookups::new(Instant::ZERO);
        let t = Instant::ZERO;
        assert_eq!(l.plan(t, &nick("a"), ConnId(0)), LookupPlan::Send);
        for i in 1..MAX_WAITING_PER_NICK as u64 {
            assert_eq!(l.plan(t, &nick("a"), ConnId(i)), LookupPlan::Joined);
        }
        assert_eq!(l.plan(t, &nick("a"), ConnId(50)), LookupPlan::Refuse);
        for i in 0..(MAX_CACHED + 10) {
            l.answered(t, &nick(&format!("c{i}")), None);
        }
        assert!(l.cache.len() <= MAX_CACHED);
    }
}
