//! How many `Challenge`s we sign. Any `Hello` addressed to us with a valid certificate is
//! answered with a signed `Challenge`, whoever it claims to be (answering contacts,
//! strangers and blocked nicks alike is what keeps a prober from telling them apart), and
//! a prober that completes the handshake with its own key also makes us decrypt its
//! secret. So signing is budgeted: overall, and per claimed nick, so that one prober
//! cycling through the nicks of our contacts cannot spend the budget of any one of them.
//!
//! The cost bound: at most [`BURST`] handshakes at once and one per [`REFILL_EVERY`]
//! after that, each one RSA signature and at most one RSA decryption (about 1.6 ms each
//! for RSA-2048 on our reference machine, docs/BENCHMARKS.md): about 3.2 ms of CPU per
//! 250 ms, 1.3 % of one core sustained, and about 50 ms for a burst. Beyond the budget a
//! `Hello` is refused as `Busy` without a signature: the same answer for every nick.

use core::time::Duration;
use std::collections::BTreeMap;

use super::token_bucket::TokenBucket;
use crate::nick::Nick;
use crate::time::Instant;

/// Challenges that may be signed at once, overall.
pub(super) const BURST: u32 = 16;
/// One more overall challenge per interval.
pub(super) const REFILL_EVERY: Duration = Duration::from_millis(250);
/// Challenges at once for one claimed nick, and the refill for it: a contact reconnecting
/// with backoff stays far below it.
pub(super) const NICK_BURST: u32 = 4;
pub(super) const NICK_REFILL_EVERY: Duration = Duration::from_secs(15);
/// Claimed nicks whose buckets are remembered. A prober claiming more nicks than this
/// finds the oldest forgotten (full again), but the overall budget still holds.
const MAX_NICKS: usize = 256;

/// The signing budget for inbound handshakes.
#[derive(Debug)]
pub(super) struct ChallengeBudget {
    overall: TokenBucket,
    per_nick: BTreeMap<Nick, TokenBucket>,
}

impl ChallengeBudget {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            overall: TokenBucket::full(BURST, REFILL_EVERY, now),
            per_nick: BTreeMap::new(),
        }
    }

    /// Whether a `Hello` claiming `nick` may be answered with a signed `Challenge` now;
    /// if so, its share of the budget is spent.
    pub(super) fn allow(&mut self, now: Instant, nick: &Nick) -> bool {
        if !self.per_nick.contains_key(nick) && self.per_nick.len() >= MAX_NICKS {
            self.per_nick.retain(|_, b| !b.is_full(now));
            if self.per_nick.len() >= MAX_NICKS {
                self.per_nick.pop_first();
            }
        }
        let bucket = self
            .per_nick
            .entry(nick.clone())
            .or_insert_with(|| TokenBucket::full(NICK_BURST, NICK_REFILL_EVERY, now));
        // The nick's share first, so a refused nick does not spend the overall budget.
        bucket.has_token(now) && self.overall.take(now) && bucket.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    #[test]
    fn one_claimed_nick_gets_its_share_and_no_more() {
        let t = Instant::ZERO;
        let mut b = ChallengeBudget::new(t);
        let bob = nick("bob");
        assert!((0..NICK_BURST).all(|_| b.allow(t, &bob)));
        assert!(!b.allow(t, &bob));
        // Other nicks are still answered, and bob again after the refill.
        assert!(b.allow(t, &nick("carol")));
        assert!(b.allow(t + NICK_REFILL_EVERY, &bob));
    }

    #[test]
    fn many_nicks_share_one_overall_budget_whose_rate_is_bounded() {
        let t = Instant::ZERO;
        let mut b = ChallengeBudget::new(t);
        let answered = (0..1_000)
            .filter(|i| b.allow(t, &nick(&format!("n{i}"))))
            .count();
        assert_eq!(answered, BURST as usize);
        // Over a minute of a prober with a thousand nicks, the rate holds.
        let mut answered = 0;
        for step in 0..60_000u64 {
            let now = t + Duration::from_millis(step);
            if b.allow(now, &nick(&format!("m{}", step % 1_000))) {
                answered += 1;
            }
        }
        let bound = 60_000 / REFILL_EVERY.as_millis() as usize + 1;
        assert!(answered <= bound, "{answered} > {bound}");
        assert!(b.per_nick.len() <= MAX_NICKS);
    }
}
