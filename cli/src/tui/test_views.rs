//! Views for the interface's tests.

use p2pchat_core::identity::Fingerprint;
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ContactView, PeerView, RegistryView};
use p2pchat_core::test_keys;
use p2pchat_core::time::Instant;

/// Test key `i`'s fingerprint.
pub(crate) fn fingerprint(i: usize) -> Fingerprint {
    test_keys::rsa(i).public().fingerprint()
}

/// Alice's view with nothing going on.
pub(crate) fn empty_view() -> PeerView {
    let me = test_keys::identity(0, "alice");
    PeerView {
        nick: me.nick.clone(),
        onion: me.address(),
        fingerprint: me.rsa.public().fingerprint(),
        registry: RegistryView::Registered,
        contacts: Vec::new(),
        chats: Vec::new(),
        requests: Vec::new(),
        queued: 0,
        now: Instant::ZERO,
    }
}

/// A contact with test key `i`, online, nothing waiting.
pub(crate) fn contact(name: &str, i: usize) -> ContactView {
    ContactView {
        nick: Nick::new(name).unwrap(),
        fingerprint: Some(fingerprint(i)),
        verified: false,
        blocked: false,
        online: Some(true),
        queued: 0,
        unread: 0,
        next_delivery: None,
        conflict: None,
        chat: None,
    }
}
