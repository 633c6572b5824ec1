//! Real time as the core's [`Instant`]: microseconds since the runtime started.

use core::time::Duration;

use async_std::channel::{Receiver, RecvError};

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

/// What a loop waits for: an input, or its core's next timer.
#[derive(Debug)]
pub enum Wake<T> {
    /// An input arrived.
    Input(T),
    /// The deadline passed: call the core's `handle_timeout`.
    Timer,
}

/// Waits for the next input from `rx`, or until `deadline` (the core's `poll_timeout`).
/// An error means every sender is gone.
pub async fn next_input<T>(
    rx: &Receiver<T>,
    clock: &Clock,
    deadline: Option<Instant>,
) -> Result<Wake<T>, RecvError> {
    match deadline {
        Some(at) => match async_std::future::timeout(clock.until(at), rx.recv()).await {
            Ok(input) => input.map(Wake::Input),
            Err(_) => Ok(Wake::Timer),
        },
        None => rx.recv().await.map(Wake::Input),
    }
}
