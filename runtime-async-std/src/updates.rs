//! What the peer loop tells user interfaces: every event to every subscriber, and the view
//! of what the user sees, published after each drain.
//!
//! A subscriber that does not keep up never stalls the loop: its queue fills, later events
//! are dropped for it alone, and once it has room again it is told `Lagged` — then it
//! reads the view, which is always current, instead of the events it missed.

use std::sync::{Arc, Mutex, PoisonError};

use async_std::channel::{Receiver, Sender, TrySendError, bounded};
use p2pchat_core::peer::{Event, PeerView};

/// Events queued per subscriber before it counts as lagging.
const QUEUE: usize = 1024;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Something happened.
    Event(Event),
    /// Events were dropped because this subscriber did not keep up: read the view.
    Lagged,
    /// The store refused a write (why): the peer dropped its connections and accepts
    /// nothing until the store takes writes again; commands answer with the failure.
    StorePaused(String),
    /// The store takes writes again: the peer carries on from what it had stored.
    StoreResumed,
}

/// One interface's stream of updates.
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver<Update>,
}

impl Subscription {
    /// The next update; `None` once the peer has stopped.
    pub async fn next(&self) -> Option<Update> {
        self.rx.recv().await.ok()
    }

    /// The next event, for scripts and tests that never fall behind: a `Lagged` is logged
    /// and skipped.
    pub async fn next_event(&self) -> Option<Event> {
        loop {
            match self.next().await? {
                Update::Event(e) => return Some(e),
                Update::Lagged => tracing::warn!("events were dropped for a slow reader"),
                Update::StorePaused(why) => tracing::error!("the peer is paused: {why}"),
                Update::StoreResumed => tracing::info!("the peer carries on"),
            }
        }
    }
}

struct Subscriber {
    tx: Sender<Update>,
    lagged: bool,
}

/// The loop's side: subscribers and the published view. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Publisher {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    view: Arc<Mutex<Arc<PeerView>>>,
}

impl Publisher {
    pub(crate) fn new(view: PeerView) -> Self {
        Self {
            subscribers: Arc::new(Mutex::new(Vec::new())),
            view: Arc::new(Mutex::new(Arc::new(view))),
        }
    }

    /// A new subscriber, which gets every event from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        let (tx, rx) = bounded(QUEUE);
        self.lock_subscribers()
            .push(Subscriber { tx, lagged: false });
        Subscription { rx }
    }

    /// Hands `event` to every subscriber without waiting. One whose queue is full misses it
    /// (and is told so when it has room); one that went away is forgotten. False when no
    /// subscriber is left: nobody is watching any more.
    pub(crate) fn publish_event(&self, event: &Event) -> bool {
        self.publish(Update::Event(event.clone()))
    }

    /// Hands `update` to every subscriber, as [`Publisher::publish_event`] does.
    pub(crate) fn publish(&self, update: Update) -> bool {
        let mut subscribers = self.lock_subscribers();
        subscribers.retain_mut(|s| {
            if s.lagged {
                match s.tx.try_send(Update::Lagged) {
                    Ok(()) => s.lagged = false,
                    Err(TrySendError::Full(_)) => return true,
                    Err(TrySendError::Closed(_)) => return false,
                }
            }
            match s.tx.try_send(update.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.lagged = true;
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        !subscribers.is_empty()
    }

    /// Replaces the published view.
    pub(crate) fn publish_view(&self, view: PeerView) {
        *self.view.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(view);
    }

    /// The view as last published.
    pub(crate) fn view(&self) -> Arc<PeerView> {
        Arc::clone(&self.view.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Ends every subscription (the peer stopped).
    pub(crate) fn close(&self) {
        self.lock_subscribers().clear();
    }

    fn lock_subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_core::test_keys;

    fn view() -> PeerView {
        let peer = p2pchat_core::peer::Peer::new(
            Default::default(),
            test_keys::identity(0, "alice"),
            &mut test_keys::rng(1),
            p2pchat_core::time::Instant::ZERO,
        );
        peer.view()
    }

    #[test]
    fn every_subscriber_gets_every_event_and_a_slow_one_is_told_it_lagged() {
        async_std::task::block_on(async {
            let publisher = Publisher::new(view());
            let fast = publisher.subscribe();
            let slow = publisher.subscribe();
            for _ in 0..QUEUE + 10 {
                assert!(publisher.publish_event(&Event::Registered));
                assert_eq!(fast.next().await, Some(Update::Event(Event::Registered)));
            }
            // The slow one never read: its queue holds the first QUEUE events, the rest
            // were dropped for it alone.
            for _ in 0..QUEUE {
                assert_eq!(slow.next().await, Some(Update::Event(Event::Registered)));
            }
            assert!(publisher.publish_event(&Event::Unregistered));
            assert_eq!(slow.next().await, Some(Update::Lagged));
            assert_eq!(slow.next().await, Some(Update::Event(Event::Unregistered)));
            assert_eq!(fast.next().await, Some(Update::Event(Event::Unregistered)));
        });
    }

    #[test]
    fn a_subscriber_that_went_away_is_forgotten_and_closing_ends_the_others() {
        async_std::task::block_on(async {
            let publisher = Publisher::new(view());
            let gone = publisher.subscribe();
            let stays = publisher.subscribe();
            drop(gone);
            assert!(publisher.publish_event(&Event::Registered));
            assert_eq!(publisher.lock_subscribers().len(), 1);
            publisher.close();
            assert_eq!(stays.next().await, Some(Update::Event(Event::Registered)));
            assert_eq!(stays.next().await, None);
            assert!(!publisher.publish_event(&Event::Registered));
        });
    }
}
