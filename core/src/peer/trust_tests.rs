//! Trust that a stranger cannot move: key conflicts only on proof, the same answers for
//! contacts, strangers and blocked nicks until then, signing within a budget, and the
//! user settling a conflict by naming the key to keep.

use core::time::Duration;

use super::*;
use crate::handshake::HandshakeError;
use crate::harness::World;
use crate::identity::Identity;
use crate::peer_wire::{PeerFrame, RejectReason};
use crate::test_keys;

fn world3() -> World {
    World::new(&["alice", "bob", "carol"], PeerConfig::default())
}

/// Alice and bob chatted, so alice has bob pinned; the chat is closed.
fn alice_has_bob_pinned() -> World {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    w.peers[0].close_chat(w.now, &bob, "bye").unwrap();
    w.run();
    w.take(0);
    w.take(1);
    assert!(w.peers[0].contact(&bob).unwrap().fingerprint.is_some());
    w
}

/// Mallory's own key and onion, certifying the nick `nick`: she can prove this key.
fn mallory_as(nick: &Nick) -> Identity {
    Identity::new(nick.clone(), test_keys::rsa(8), test_keys::onion(8))
}

/// Someone who copied `victim`'s certificate: a valid Hello, but no key behind it.
fn copier_of(victim: &Identity) -> Identity {
    let mut copier = Identity::new(victim.nick.clone(), test_keys::rsa(9), test_keys::onion(9));
    copier.certificate = victim.certificate.clone();
    copier
}

fn key_changed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::KeyChanged { .. }))
        .count()
}

#[test]
fn a_hello_with_a_copied_certificate_records_no_conflict_and_gets_no_further() {
    let mut w = alice_has_bob_pinned();
    let bob = w.nick(1);
    let copier = copier_of(w.peers[1].identity());
    let probe = w.probe(0, &copier, true);
    assert!(
        matches!(probe.first, Some(PeerFrame::Challenge(_))),
        "{probe:?}"
    );
    assert!(
        matches!(
            probe.after_finish,
            Some(PeerFrame::Reject(RejectReason::BadProof))
        ),
        "{probe:?}"
    );
    let events = w.take(0);
    assert_eq!(key_changed(&events), 0, "{events:?}");
    assert_eq!(w.peers[0].contact(&bob).unwrap().conflict, None);
}

#[test]
fn an_unproven_hello_under_a_contacts_nick_records_no_conflict_even_with_another_key() {
    // Mallory's own certificate under "bob", but she never sends her Finish: on the old
    // code this Hello alone recorded a conflict for bob.
    let mut w = alice_has_bob_pinned();
    let bob = w.nick(1);
    let probe = w.probe(0, &mallory_as(&bob), false);
    assert!(
        matches!(probe.first, Some(PeerFrame::Challenge(_))),
        "{probe:?}"
    );
    assert_eq!(key_changed(&w.take(0)), 0);
    assert_eq!(w.peers[0].contact(&bob).unwrap().conflict, None);
}

#[test]
fn a_proven_other_key_under_a_contacts_nick_is_a_conflict_that_survives_a_restart() {
    let mut w = alice_has_bob_pinned();
    let bob = w.nick(1);
    let mallory = mallory_as(&bob);
    let probe = w.probe(0, &mallory, true);
    assert!(
        matches!(
            probe.after_finish,
            Some(PeerFrame::Reject(RejectReason::KeyMismatch))
        ),
        "{probe:?}"
    );
    assert_eq!(key_changed(&w.take(0)), 1);
    let conflict = w.peers[0].contact(&bob).unwrap().conflict.unwrap();
    assert_eq!(conflict.presented, mallory.rsa.public().fingerprint());
    // A second attempt with the same key is not a second warning.
    w.probe(0, &mallory, true);
    assert_eq!(key_changed(&w.take(0)), 0);
    w.restart_peer(0, PeerConfig::default());
    let after = w.peers[0].contact(&bob).unwrap().conflict;
    assert_eq!(after, Some(conflict));
}

#[test]
fn contacts_strangers_and_blocked_nicks_get_the_same_answers_until_the_key_is_proven() {
    let mut w = alice_has_bob_pinned();
    let (bob, carol) = (w.nick(1), w.nick(2));
    w.peers[0].block(w.now, &carol).unwrap();
    w.run();
    let stranger = Nick::new("zed").unwrap();
    for nick in [&bob, &carol, &stranger] {
        // Both a prober with its own key and one with a copied certificate.
        for prober in [
            mallory_as(nick),
            copier_of(&test_keys::identity(7, nick.as_str())),
        ] {
            let probe = w.probe(0, &prober, false);
            let Some(PeerFrame::Challenge(c)) = probe.first else {
                panic!("{nick}: {probe:?}");
            };
            assert_eq!(c.body.certificate, w.peers[0].identity().certificate);
        }
    }
    // Copied certificates stop at the proof, whoever they name: the same answer again.
    for nick in [&bob, &carol, &stranger] {
        let probe = w.probe(0, &copier_of(&test_keys::identity(7, nick.as_str())), true);
        assert!(
            matches!(
                probe.after_finish,
                Some(PeerFrame::Reject(RejectReason::BadProof))
            ),
            "{nick}: {probe:?}"
        );
    }
    assert_eq!(key_changed(&w.take(0)), 0);
}

#[test]
fn fifteen_hundred_hellos_cost_a_bounded_number_of_signatures() {
    let mut w = alice_has_bob_pinned();
    let mut challenges = 0;
    let mut busy = 0;
    for i in 0..1_500 {
        let nick = Nick::new(&format!("probe{}", i % 50)).unwrap();
        match w
            .probe(0, &copier_of(&test_keys::identity(7, nick.as_str())), false)
            .first
        {
            Some(PeerFrame::Challenge(_)) => challenges += 1,
            Some(PeerFrame::Reject(RejectReason::Busy)) => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(challenges, challenges::BURST as usize);
    assert_eq!(challenges + busy, 1_500);
    // Later the budget is back, at its rate.
    w.advance(Duration::from_secs(60));
    let bob = w.nick(1);
    let probe = w.probe(0, &mallory_as(&bob), false);
    assert!(matches!(probe.first, Some(PeerFrame::Challenge(_))));
}

#[test]
fn verify_with_the_pinned_fingerprint_clears_a_conflict_and_keeps_the_pin() {
    let mut w = alice_has_bob_pinned();
    let bob = w.nick(1);
    let real = w.peers[1].identity().rsa.public().fingerprint();
    w.probe(0, &mallory_as(&bob), true);
    assert!(w.peers[0].contact(&bob).unwrap().conflict.is_some());
    w.peers[0].verify(w.now, &bob, real).unwrap();
    let c = w.peers[0].contact(&bob).unwrap();
    assert_eq!(
        (c.conflict, c.fingerprint, c.verified),
        (None, Some(real), true)
    );
    // And the real bob is still reached: a message goes to him.
    let id = w.peers[0].send(w.now, &bob, "still you?").unwrap();
    w.advance(Duration::from_secs(30));
    let events = w.take(0);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Delivered { id: d, .. } if *d == id)),
        "{events:?}"
    );
}

#[test]
fn trust_names_the_key_it_accepts_and_refuses_a_key_that_has_not_changed() {
    let mut w = alice_has_bob_pinned();
    let (bob, carol) = (w.nick(1), w.nick(2));
    let real = w.peers[1].identity().rsa.public().fingerprint();
    let mallory = mallory_as(&bob);
    let theirs = mallory.rsa.public().fingerprint();
    // No conflict: nothing to trust, and the pin stays (the old code dropped it).
    assert_eq!(
        w.peers[0].trust(w.now, &bob, real),
        Err(CommandError::KeyNotChanged(bob.clone()))
    );
    assert_eq!(w.peers[0].contact(&bob).unwrap().fingerprint, Some(real));
    assert_eq!(
        w.peers[0].trust(w.now, &carol, real),
        Err(CommandError::NoContact(carol.clone()))
    );
    w.probe(0, &mallory, true);
    // A fingerprint that is neither key is refused; nothing changes.
    let other = test_keys::rsa(5).public().fingerprint();
    assert_eq!(
        w.peers[0].trust(w.now, &bob, other),
        Err(CommandError::FingerprintMismatch(bob.clone()))
    );
    assert!(w.peers[0].contact(&bob).unwrap().conflict.is_some());
    // Naming the pinned key keeps it.
    w.peers[0].trust(w.now, &bob, real).unwrap();
    let c = w.peers[0].contact(&bob).unwrap();
    assert_eq!((c.conflict, c.fingerprint), (None, Some(real)));
    // Naming the presented key takes it, unverified.
    w.probe(0, &mallory, true);
    w.peers[0].trust(w.now, &bob, theirs).unwrap();
    let c = w.peers[0].contact(&bob).unwrap();
    assert_eq!(
        (c.conflict, c.fingerprint, c.verified),
        (None, Some(theirs), false)
    );
}

#[test]
fn a_contact_pinned_by_fingerprint_keeps_its_deliveries_when_another_key_is_presented() {
    let mut w = world3();
    let bob = w.nick(1);
    let real = w.peers[1].identity().rsa.public().fingerprint();
    w.peers[0].import_verified(w.now, &bob, real);
    w.register_all();
    // Before alice ever dialled bob: an unproven and a proven other key under his nick.
    w.probe(0, &copier_of(&test_keys::identity(7, "bob")), true);
    w.probe(0, &mallory_as(&bob), true);
    let id = w.peers[0].send(w.now, &bob, "for the real bob").unwrap();
    // Bob has never heard of alice: he is asked, and accepts as soon as he is.
    for _ in 0..60 {
        w.advance(Duration::from_secs(10));
        let request = w.take(1).into_iter().find_map(|e| match e {
            Event::ConnectionRequest { request, .. } => Some(request),
            _ => None,
        });
        if let Some(request) = request {
            w.peers[1].accept(w.now, request).unwrap();
            break;
        }
    }
    w.run();
    let events = w.take(0);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Delivered { id: d, .. } if *d == id)),
        "{events:?}"
    );
    let shown: Vec<_> = w
        .take(1)
        .into_iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
}

#[test]
fn a_responder_proven_to_hold_another_key_is_a_conflict_for_the_initiator() {
    // Bob's onion answers with a key alice did not pin (bob lost his RSA key and made
    // another): the Challenge is signed by that key, so the conflict is proven.
    let mut w = alice_has_bob_pinned();
    let bob = w.nick(1);
    let bob_id = w.peers[1].identity().clone();
    let new_bob = Identity::new(bob.clone(), test_keys::rsa(8), test_keys::onion(1));
    assert_eq!(new_bob.address(), bob_id.address());
    w.replace_peer(1, new_bob);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let events = w.take(0);
    assert_eq!(key_changed(&events), 1, "{events:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ChatClosed {
            reason: CloseReason::Failed(ChatFailure::Handshake(
                HandshakeError::Impersonation { .. }
            )),
            ..
        }
    )));
}
