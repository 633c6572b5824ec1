//! A token bucket: `burst` tokens, one more every `every`, for work that anyone on the
//! network can ask of us.

use core::time::Duration;

use crate::time::Instant;

/// A token bucket, refilled lazily from the time it is asked at.
#[derive(Debug)]
pub(super) struct TokenBucket {
    burst: u32,
    every: Duration,
    tokens: u32,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn full(burst: u32, every: Duration, now: Instant) -> Self {
        debug_assert!(burst > 0 && !every.is_zero(), "a bucket that never serves");
        Self {
            burst,
            every,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes a token if one is left at `now`.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        if !self.has_token(now) {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Whether a token is left at `now` (none is taken).
    pub(super) fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens > 0
    }

    /// Whether the bucket is full at `now` (a full bucket carries no state worth keeping).
    pub(super) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens == self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned =
            u32::try_from(elapsed.as_micros() / self.every.as_micros().max(1)).unwrap_or(u32::MAX);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.refilled_at = self.refilled_at + self.every * earned.min(self.burst);
        }
        if self.tokens == self.burst {
            self.refilled_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_serves_its_burst_then_one_token_per_interval() {
        let every = Duration::from_secs(2);
        let t = Instant::ZERO;
        let mut b = TokenBucket::full(3, every, t);
        assert!((0..3).all(|_| b.take(t)));
        assert!(!b.take(t));
        assert!(!b.take(t + every / 2));
        assert!(b.take(t + every));
        assert!(!b.take(t + every));
        // A long pause refills to the burst, no more.
        let later = t + every * 100;
        assert!(b.is_full(later));
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }
}
