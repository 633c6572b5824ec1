//! Real time as the core's [`Instant`]: microseconds since the runtime started.

use core::time::Duration;

use p2pchat_core::time::Instant;

/// Maps the monotonic clock to core instants.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(micros)
    }

    /// How long until `at` (zero if it has passed).
    pub fn until(&self, at: Instant) -> Duration {
        Duration::from_micros(at.as_micros().saturating_sub(self.now().as_micros()))
    }
}
