//! Scenario tests: one registry and several peers in the shared in-memory world.

use core::time::Duration;

use super::*;
use crate::conn::ConnId;
use crate::handshake::HandshakeError;
use crate::harness::{Delivery, End, Host, World};
use crate::registry::{RegisterError, RegistryConfig};
use crate::test_keys;

fn messages(events: &[Event]) -> Vec<(String, u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { nick, id, text } => Some((nick.to_string(), *id, text.clone())),
            _ => None,
        })
        .collect()
}

fn delivered(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn world3() -> World {
    World::new(&["alice", "bob", "carol"], PeerConfig::default())
}

#[test]
fn three_peers_register_list_and_see_presence() {
    let mut w = world3();
    w.peers[0].register(w.now);
    w.run();
    assert!(w.take(0).contains(&Event::Registered));
    w.peers[1].register(w.now);
    w.peers[2].register(w.now);
    // Presence is pushed within one presence interval.
    w.advance(RegistryConfig::default().presence_interval);
    let joined: Vec<String> = w
        .take(0)
        .into_iter()
        .filter_map(|e| match e {
            Event::Presence(crate::registry::Presence::Joined(r)) => Some(r.nick().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(joined, vec!["bob", "carol"]);
    w.peers[0].refresh_users(w.now, "", None);
    w.run();
    let users = w.take(0).into_iter().find_map(|e| match e {
        Event::Users { users, more } => Some((users, more)),
        _ => None,
    });
    let (users, more) = users.expect("a user page");
    let nicks: Vec<String> = users.iter().map(|u| u.nick().to_string()).collect();
    assert_eq!(nicks, vec!["alice", "bob", "carol"]);
    assert!(!more);
}

#[test]
fn a_chat_opens_after_acceptance_and_messages_flow_both_ways_with_delivery() {
    let mut w = world3();
    w.register_all();
    let (alice, bob) = (w.nick(0), w.nick(1));
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let req = w.take(1).into_iter().find_map(|e| match e {
        Event::ConnectionRequest {
            request,
            nick,
            onion,
            fingerprint,
        } => Some((request, nick, onion, fingerprint)),
        _ => None,
    });
    let (request, nick, onion, fingerprint) = req.expect("bob is asked");
    assert_eq!(nick, alice);
    assert_eq!(onion, w.peers[0].identity().address());
    assert_eq!(
        fingerprint,
        w.peers[0].identity().rsa.public().fingerprint()
    );
    assert_eq!(
        w.peers[0].chat_state(&bob),
        Some(&ChatState::AwaitingAcceptance)
    );
    w.peers[1].accept(w.now, request).unwrap();
    w.run();
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Connected));

    let a1 = w.peers[0].send(w.now, &bob, "hi bob").unwrap();
    let a2 = w.peers[0].send(w.now, &bob, "how are you?").unwrap();
    let b1 = w.peers[1].send(w.now, &alice, "hi alice").unwrap();
    w.run();
    let ea = w.take(0);
    let eb = w.take(1);
    assert_eq!(
        messages(&eb),
        vec![
            ("alice".into(), a1, "hi bob".into()),
            ("alice".into(), a2, "how are you?".into())
        ]
    );
    assert_eq!(messages(&ea), vec![("bob".into(), b1, "hi alice".into())]);
    assert_eq!(delivered(&ea), vec![a1, a2]);
    assert_eq!(delivered(&eb), vec![b1]);
}

#[test]
fn messages_sent_before_acceptance_are_delivered_after_it() {
    let mut w = world3();
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    let id = w.peers[0].send(w.now, &bob, "early").unwrap();
    w.run();
    let r = w.request_id(1);
    w.peers[1].accept(w.now, r).unwrap();
    w.run();
    assert_eq!(
        messages(&w.take(1)),
        vec![("alice".into(), id, "early".into())]
    );
    assert_eq!(delivered(&w.take(0)), vec![id]);
}

#[test]
fn a_denied_request_tells_the_initiator_the_reason_and_fails_queued_messages() {
    let mut w = world3();
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    let id = w.peers[0].send(w.now, &bob, "hello?").unwrap();
    w.run();
    let r = w.request_id(1);
    w.peers[1].deny(w.now, r, "busy right now").unwrap();
    w.run();
    let ea = w.take(0);
    assert!(ea.contains(&Event::ChatClosed {
        nick: bob.clone(),
        reason: CloseReason::Denied("busy right now".into())
    }));
    assert!(
        ea.iter()
            .any(|e| matches!(e, Event::Failed { id: x, .. } if *x == id))
    );
    assert_eq!(w.peers[0].chat_state(&bob), None);
    assert!(messages(&w.take(1)).is_empty());
}

#[test]
fn closing_is_a_two_step_exchange_with_the_reason() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    let id = w.peers[1].send(w.now, &alice, "last words").unwrap();
    w.peers[0].close_chat(w.now, &bob, "bye").unwrap();
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Closing));
    w.run();
    let ea = w.take(0);
    let eb = w.take(1);
    assert!(ea.contains(&Event::ChatClosed {
        nick: bob.clone(),
        reason: CloseReason::ByUs("bye".into())
    }));
    assert!(eb.contains(&Event::ChatClosed {
        nick: alice.clone(),
        reason: CloseReason::ByPeer("bye".into())
    }));
    // Bob's message was in flight when Alice closed: it still arrived and was acknowledged.
    assert_eq!(messages(&ea).len(), 1);
    assert_eq!(delivered(&eb), vec![id]);
    assert!(w.peers[0].chat_state(&bob).is_none() && w.peers[1].chat_state(&alice).is_none());
    // A message written after the close is queued, reopens the chat, and is delivered
    // without a new prompt: they are contacts now.
    let later = w.peers[1].send(w.now, &alice, "one more thing").unwrap();
    w.run();
    let ea = w.take(0);
    assert!(
        !ea.iter()
            .any(|e| matches!(e, Event::ConnectionRequest { .. }))
    );
    assert_eq!(messages(&ea).len(), 1);
    assert_eq!(delivered(&w.take(1)), vec![later]);
}

#[test]
fn duplicate_nick_and_duplicate_onion_registrations_are_refused() {
    let mut w = World::new(&["alice", "ALICE"], PeerConfig::default());
    w.peers[0].register(w.now);
    w.run();
    assert!(
        w.register_peer(1)
            .contains(&Event::RegistrationFailed(RegisterError::NickTaken))
    );
    // Same onion key as alice, other nick.
    let twin = crate::identity::Identity::new(
        Nick::new("twin").unwrap(),
        test_keys::rsa(5),
        test_keys::onion(0),
    );
    w.replace_peer(1, twin);
    assert!(
        w.register_peer(1)
            .contains(&Event::RegistrationFailed(RegisterError::AddressTaken))
    );
}

#[test]
fn a_registration_with_a_certificate_from_another_onion_key_is_refused() {
    let mut w = World::new(&["mallory"], PeerConfig::default());
    let mut id = test_keys::identity(0, "mallory");
    // Mallory's certificate is signed by onion key 3, but she claims onion key 0's address.
    let forged = crate::identity::KeyBindingCertificate::issue(
        &test_keys::onion(3),
        id.nick.clone(),
        id.rsa.public().clone(),
        0,
    );
    id.certificate = crate::identity::KeyBindingCertificate {
        onion: id.address(),
        ..forged
    };
    w.replace_peer(0, id);
    assert!(
        w.register_peer(0)
            .contains(&Event::RegistrationFailed(RegisterError::BadCertificate))
    );
}

#[test]
fn the_initiator_detects_a_responder_key_that_differs_from_its_pinned_contact() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    let bob = w.nick(1);
    let pinned = test_keys::rsa(9).public().fingerprint();
    w.peers[0].import_verified(w.now, &bob, pinned);
    w.register_all();
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let ea = w.take(0);
    let closed = ea.iter().find_map(|e| match e {
        Event::ChatClosed {
            reason: CloseReason::Failed(f),
            ..
        } => Some(f.clone()),
        _ => None,
    });
    assert!(
        matches!(closed, Some(ChatFailure::BadRecord { .. })),
        "{ea:?}"
    );
    assert!(
        closed
            .map(|f| f.to_string())
            .unwrap_or_default()
            .starts_with("possible impersonation")
    );
}

#[test]
fn the_responder_rejects_an_initiator_whose_key_is_not_the_registered_one() {
    let mut w = world3();
    w.register_all();
    // Mallory holds carol's onion key and certificate but another RSA key: she registers
    // nothing and dials bob claiming to be carol.
    let carol = test_keys::identity(2, "carol");
    let mallory =
        crate::identity::Identity::new(carol.nick.clone(), test_keys::rsa(8), test_keys::onion(2));
    w.replace_peer(2, mallory);
    let bob = w.nick(1);
    w.peers[2].connect(w.now, &bob).unwrap();
    w.run();
    let eb = w.take(1);
    assert!(
        eb.iter().any(|e| matches!(
            e,
            Event::IncomingRejected {
                reason: HandshakeError::Impersonation { .. },
                ..
            }
        )),
        "{eb:?}"
    );
    assert!(
        !eb.iter()
            .any(|e| matches!(e, Event::ConnectionRequest { .. }))
    );
    let em = w.take(2);
    assert!(
        em.iter().any(|e| matches!(
            e,
            Event::ChatClosed {
                reason: CloseReason::Failed(ChatFailure::Handshake(HandshakeError::Rejected(
                    crate::peer_wire::RejectReason::KeyMismatch
                ))),
                ..
            }
        )),
        "{em:?}"
    );
}

#[test]
fn a_captured_handshake_replayed_to_the_responder_fails() {
    let mut w = world3();
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    // What alice sent on her connection to bob: Hello and Finish.
    let (alice_end, _) = w
        .links
        .iter()
        .find(|((h, _), (g, _))| *h == Host::Peer(0) && *g == Host::Peer(1))
        .map(|(a, b)| (*a, *b))
        .expect("a link");
    let recorded = w.sent[&alice_end].clone();
    w.take(1);
    // An attacker opens a fresh connection to bob and replays it byte for byte.
    // An honest-looking attacker: Hello first, Finish after bob's (new) Challenge.
    let hello_len = 4 + u32::from_be_bytes(recorded[..4].try_into().unwrap()) as usize;
    let (hello, finish) = recorded.split_at(hello_len);
    let conn = w.peers[1].accept_incoming(w.now).unwrap();
    w.peers[1].handle_input(w.now, Input::Received { conn, bytes: hello });
    w.run();
    w.peers[1].handle_input(
        w.now,
        Input::Received {
            conn,
            bytes: finish,
        },
    );
    w.run();
    let eb = w.take(1);
    assert!(
        eb.iter().any(|e| matches!(
            e,
            Event::IncomingRejected {
                reason: HandshakeError::BadSignature,
                ..
            }
        )),
        "{eb:?}"
    );
    assert!(
        !eb.iter()
            .any(|e| matches!(e, Event::ConnectionRequest { .. }))
    );
}

#[test]
fn a_tampered_sealed_frame_ends_the_connection_with_a_reason() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    w.tamper_next = Some(0);
    let id = w.peers[0]
        .send(w.now, &bob, "this will be corrupted in transit")
        .unwrap();
    w.run();
    let eb = w.take(1);
    assert!(
        eb.contains(&Event::ConnectionLost {
            nick: alice.clone(),
            reason: ConnectionLost::Channel(crate::channel::ChannelError::Tampered)
        }),
        "{eb:?}"
    );
    assert!(messages(&eb).is_empty());
    // The chat recovers: after the backoff the message is resent and delivered once.
    w.advance(Duration::from_secs(5));
    let eb = w.take(1);
    assert_eq!(messages(&eb).len(), 1);
    assert_eq!(delivered(&w.take(0)), vec![id]);
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Connected));
}

#[test]
fn after_a_dropped_connection_unacknowledged_messages_are_resent_and_received_once() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    let first = w.peers[0].send(w.now, &bob, "one").unwrap();
    w.run();
    assert_eq!(messages(&w.take(1)).len(), 1);
    assert_eq!(delivered(&w.take(0)), vec![first]);
    // Two messages go out, then the link dies before anything is delivered.
    let second = w.peers[0].send(w.now, &bob, "two").unwrap();
    let third = w.peers[0].send(w.now, &bob, "three").unwrap();
    w.peers[0].poll_output().into_iter().for_each(drop); // "two" is lost on the wire
    w.cut(0, 1);
    w.run();
    let ea = w.take(0);
    assert!(ea.iter().any(|e| matches!(e, Event::ConnectionLost { .. })));
    assert!(ea.iter().any(|e| matches!(
        e,
        Event::ChatState {
            state: ChatState::Retrying { .. },
            ..
        }
    )));
    // A message written while disconnected is queued too.
    let fourth = w.peers[0].send(w.now, &bob, "four").unwrap();
    w.advance(Duration::from_secs(10));
    let eb = w.take(1);
    let got: Vec<u64> = messages(&eb).iter().map(|m| m.1).collect();
    assert_eq!(got, vec![second, third, fourth]);
    let ea = w.take(0);
    let mut d = delivered(&ea);
    d.sort();
    assert_eq!(d, vec![second, third, fourth]);
    assert_eq!(w.peers[1].chat_state(&alice), Some(&ChatState::Connected));
}

#[test]
fn a_resent_message_the_receiver_already_has_is_not_delivered_twice() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    let id = w.peers[0].send(w.now, &bob, "once").unwrap();
    // Deliver the message to bob but cut the link before his ack reaches alice.
    w.run_until_bob_received(1);
    w.cut(0, 1);
    w.run();
    assert_eq!(messages(&w.take(1)).len(), 1);
    w.advance(Duration::from_secs(10));
    assert!(
        messages(&w.take(1)).is_empty(),
        "the resend was de-duplicated"
    );
    assert_eq!(delivered(&w.take(0)), vec![id]);
}

impl World {
    /// Runs, but stops delivering anything to peer 0 once peer 1 has `n` messages.
    fn run_until_bob_received(&mut self, n: usize) {
        for _ in 0..10_000 {
            if messages(&self.events[1]).len() >= n {
                // Drop what is queued towards alice (bob's ack).
                self.queue.retain(|((h, _), _)| *h != Host::Peer(0));
                while let Some(out) = self.peers[1].poll_output() {
                    if let Output::Event(e) = out {
                        self.events[1].push(e);
                    }
                }
                return;
            }
            let mut progressed = false;
            for i in 0..self.peers.len() {
                while let Some(out) = self.peers[i].poll_output() {
                    progressed = true;
                    self.peer_output(i, out);
                }
            }
            if let Some((end, d)) = self.queue.pop_front() {
                progressed = true;
                self.deliver(end, d);
            }
            if !progressed {
                break;
            }
        }
        panic!("bob never received {n} messages");
    }
}

#[test]
fn simultaneous_dials_resolve_to_one_chat() {
    let mut w = world3();
    w.register_all();
    let (alice, bob) = (w.nick(0), w.nick(1));
    w.peers[0].connect(w.now, &bob).unwrap();
    w.peers[1].connect(w.now, &alice).unwrap();
    w.run();
    // Each side asked the user about the other's dial, or accepted by connecting itself.
    for i in 0..2 {
        let reqs: Vec<u64> = w.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::ConnectionRequest { request, .. } => Some(*request),
                _ => None,
            })
            .collect();
        for r in reqs {
            let _ = w.peers[i].accept(w.now, r);
        }
    }
    w.advance(Duration::from_secs(30));
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Connected));
    assert_eq!(w.peers[1].chat_state(&alice), Some(&ChatState::Connected));
    let peer_links = w
        .links
        .keys()
        .filter(|(h, _)| *h == Host::Peer(0))
        .filter(|e| matches!(w.links.get(e), Some((Host::Peer(1), _))))
        .count();
    assert_eq!(peer_links, 1, "exactly one connection between them");
    let id = w.peers[0].send(w.now, &bob, "one chat").unwrap();
    w.run();
    assert_eq!(
        messages(&w.take(1))
            .iter()
            .filter(|m| m.2 == "one chat")
            .count(),
        1
    );
    assert!(delivered(&w.take(0)).contains(&id));
}

#[test]
fn an_unreachable_contact_is_retried_with_backoff_and_its_messages_wait_until_it_returns() {
    let mut config = PeerConfig::default();
    config.backoff.max_attempts = 3;
    let mut w = World::new(&["alice", "bob"], config);
    w.register_all();
    let bob = w.nick(1);
    w.offline[1] = true;
    w.peers[0].connect(w.now, &bob).unwrap();
    let id = w.peers[0].send(w.now, &bob, "anyone there?").unwrap();
    w.run();
    let retry = w.take(0).into_iter().find_map(|e| match e {
        Event::ChatState {
            state: ChatState::Retrying { at, attempt },
            ..
        } => Some((at, attempt)),
        _ => None,
    });
    let (at, attempt) = retry.expect("a retry is scheduled");
    assert_eq!(attempt, 1);
    assert!(at > w.now);
    w.advance(Duration::from_secs(600));
    let ea = w.take(0);
    assert!(
        ea.iter().any(|e| matches!(
            e,
            Event::ChatClosed {
                reason: CloseReason::Failed(ChatFailure::Unreachable { attempts: 4, .. }),
                ..
            }
        )),
        "{ea:?}"
    );
    // The chat gave up; the message did not.
    assert!(
        !ea.iter().any(|e| matches!(e, Event::Failed { .. })),
        "{ea:?}"
    );
    assert_eq!(w.peers[0].state().queued_len(&bob), 1);
    let next = w.peers[0].contact(&bob).and_then(|c| c.next_delivery);
    assert!(
        next.is_some_and(|t| t > w.now),
        "a delivery attempt is scheduled"
    );
    w.offline[1] = false;
    w.advance(Duration::from_secs(16 * 60));
    // Bob has never talked to alice: he is asked (again at each attempt until he answers).
    let request = w.events[1]
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ConnectionRequest { request, .. } => Some(*request),
            _ => None,
        })
        .expect("bob is asked");
    w.peers[1].accept(w.now, request).unwrap();
    w.run();
    let ea = w.take(0);
    assert_eq!(delivered(&ea), vec![id], "{ea:?}");
    assert_eq!(messages(&w.take(1)).len(), 1);
    assert_eq!(w.peers[0].state().queued_len(&bob), 0);
}

#[test]
fn connecting_to_an_unknown_nick_says_it_is_not_online() {
    let mut w = world3();
    w.register_all();
    let ghost = Nick::new("ghost").unwrap();
    w.peers[0].connect(w.now, &ghost).unwrap();
    w.run();
    assert!(w.take(0).contains(&Event::ChatClosed {
        nick: ghost.clone(),
        reason: CloseReason::Failed(ChatFailure::NotOnline(ghost))
    }));
}

#[test]
fn many_chats_at_once() {
    let mut w = World::new(
        &["hub", "a", "b", "c", "d"],
        PeerConfig {
            accept_policy: AcceptPolicy::AcceptAll,
            ..PeerConfig::default()
        },
    );
    w.register_all();
    for i in 1..5 {
        let n = w.nick(i);
        w.peers[0].connect(w.now, &n).unwrap();
    }
    w.run();
    for i in 1..5 {
        let n = w.nick(i);
        assert_eq!(w.peers[0].chat_state(&n), Some(&ChatState::Connected));
        w.peers[0].send(w.now, &n, &format!("to {n}")).unwrap();
    }
    w.run();
    for i in 1..5 {
        assert_eq!(messages(&w.take(i)).len(), 1);
    }
    assert_eq!(delivered(&w.take(0)).len(), 4);
}

#[test]
fn messages_over_the_size_limit_are_refused_at_send() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    let long = "x".repeat(crate::peer_wire::MAX_MESSAGE_LEN + 1);
    assert!(matches!(
        w.peers[0].send(w.now, &bob, &long),
        Err(CommandError::MessageTooLong { .. })
    ));
    let max = "y".repeat(crate::peer_wire::MAX_MESSAGE_LEN);
    w.peers[0].send(w.now, &bob, &max).unwrap();
    w.run();
    assert_eq!(
        messages(&w.take(1))[0].2.len(),
        crate::peer_wire::MAX_MESSAGE_LEN
    );
}

#[test]
fn shutdown_closes_chats_then_unregisters() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    w.peers[0].shutdown(w.now);
    w.run();
    let ea = w.take(0);
    assert!(ea.contains(&Event::ChatClosed {
        nick: bob,
        reason: CloseReason::ByUs("shutting down".into())
    }));
    assert!(ea.contains(&Event::Unregistered));
    assert_eq!(ea.last(), Some(&Event::ShutdownComplete));
    assert!(w.peers[0].is_shut_down());
    // Presence is pushed within one presence interval.
    w.advance(RegistryConfig::default().presence_interval);
    let eb = w.take(1);
    assert!(eb.contains(&Event::ChatClosed {
        nick: alice.clone(),
        reason: CloseReason::ByPeer("shutting down".into())
    }));
    assert!(eb.contains(&Event::Presence(crate::registry::Presence::Left(alice))));
}

#[test]
fn a_silent_connection_is_detected_by_keepalive_and_redialed() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    // Bob's side goes silent without closing: drop everything towards alice from now on.
    let links: Vec<End> = w
        .links
        .keys()
        .filter(|(h, _)| *h == Host::Peer(1))
        .copied()
        .collect();
    for l in links {
        if let Some(to) = w.links.get(&l).copied()
            && to.0 == Host::Peer(0)
        {
            w.links.remove(&l);
        }
    }
    w.advance(PeerConfig::default().idle_timeout + Duration::from_secs(1));
    let ea = w.take(0);
    assert!(
        ea.contains(&Event::ConnectionLost {
            nick: bob.clone(),
            reason: ConnectionLost::Timeout
        }),
        "{ea:?}"
    );
    w.advance(Duration::from_secs(10));
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Connected));
}

#[test]
fn registry_loss_is_reported_and_registration_restored() {
    let mut w = world3();
    w.register_all();
    let reg_link: Vec<End> = w
        .links
        .keys()
        .filter(|(h, _)| *h == Host::Registry)
        .copied()
        .collect();
    for l in reg_link {
        w.registry.handle_closed(l.1);
        w.close(l);
    }
    w.run();
    assert!(w.take(0).iter().any(|e| matches!(
        e,
        Event::RegistryLost {
            retry_at: Some(_),
            ..
        }
    )));
    w.advance(Duration::from_secs(5));
    assert!(w.take(0).contains(&Event::Registered));
    assert_eq!(w.registry.user_count(), 3);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_bytes_into_a_peer_connection_never_panic_or_leak(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..6)) {
        let mut rng = test_keys::rng(3);
        let mut p = Peer::new(PeerConfig::default(), test_keys::identity(0, "alice"), &mut rng, Instant::ZERO);
        let conn = p.accept_incoming(Instant::ZERO).unwrap();
        for c in &chunks {
            p.handle_input(Instant::ZERO, Input::Received { conn, bytes: c });
        }
        while p.poll_output().is_some() {}
        p.handle_timeout(Instant::ZERO + Duration::from_secs(3600));
        while p.poll_output().is_some() {}
        proptest::prop_assert_eq!(p.conns.len(), 0);
    }
}

#[test]
fn the_initiator_waits_as_long_as_the_responders_user_may_take_to_decide() {
    let mut w = world3();
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let r = w.request_id(1);
    // Keep-alive pings from the registry link must not matter; the human takes 4 minutes.
    w.advance(Duration::from_secs(240));
    w.peers[1].accept(w.now, r).unwrap();
    w.run();
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Connected));
}

#[test]
fn an_unanswered_request_expires_and_the_initiator_is_told() {
    let mut w = world3();
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let r = w.request_id(1);
    w.advance(PeerConfig::default().decision_timeout + Duration::from_secs(1));
    assert_eq!(w.peers[1].accept(w.now, r), Err(CommandError::NoRequest(r)));
    assert!(
        w.take(0)
            .iter()
            .any(|e| matches!(e, Event::ConnectionLost { .. }))
    );
}

#[test]
fn the_initiator_detects_a_responder_whose_key_is_not_the_registered_one() {
    let mut w = world3();
    w.register_all();
    // Mallory has stolen bob's onion key (not his RSA key) and answers at bob's address,
    // while the registry still lists the real bob.
    let impostor = crate::identity::Identity::new(
        Nick::new("bob").unwrap(),
        test_keys::rsa(8),
        test_keys::onion(1),
    );
    w.replace_peer(1, impostor);
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let ea = w.take(0);
    let failure = ea.iter().find_map(|e| match e {
        Event::ChatClosed {
            reason: CloseReason::Failed(ChatFailure::Handshake(h)),
            ..
        } => Some(h.clone()),
        _ => None,
    });
    assert!(
        matches!(failure, Some(HandshakeError::Impersonation { .. })),
        "{ea:?}"
    );
    assert!(!w.take(1).iter().any(|e| matches!(e, Event::Message { .. })));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_bytes_from_the_registry_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..6)) {
        let mut rng = test_keys::rng(4);
        let mut p = Peer::new(PeerConfig::default(), test_keys::identity(0, "alice"), &mut rng, Instant::ZERO);
        p.register(Instant::ZERO);
        let Some(Output::Connect { conn, target: Target::Registry }) = p.poll_output() else {
            panic!("register dials the registry")
        };
        p.handle_input(Instant::ZERO, Input::Connected { conn });
        for c in &chunks {
            p.handle_input(Instant::ZERO, Input::Received { conn, bytes: c });
        }
        while p.poll_output().is_some() {}
        p.handle_timeout(Instant::ZERO + Duration::from_secs(3600));
        while p.poll_output().is_some() {}
    }
}

#[test]
fn the_responder_refuses_an_initiator_whose_key_is_not_its_pinned_fingerprint() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    let alice = w.nick(0);
    let pinned = test_keys::rsa(9).public().fingerprint();
    w.peers[1].import_verified(w.now, &alice, pinned);
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let eb = w.take(1);
    assert!(
        eb.iter().any(|e| matches!(
            e,
            Event::IncomingRejected {
                reason: HandshakeError::Impersonation { .. },
                ..
            }
        )),
        "{eb:?}"
    );
    assert!(
        !eb.iter()
            .any(|e| matches!(e, Event::ConnectionRequest { .. }))
    );
}

impl World {
    /// Delivers queued items one at a time until bytes are on their way to peer `i`.
    fn run_until_bytes_for(&mut self, i: usize) {
        for _ in 0..10_000 {
            let drained = self.drain_outputs();
            let queued = self
                .queue
                .iter()
                .any(|((h, _), d)| *h == Host::Peer(i) && matches!(d, Delivery::Bytes(_)));
            if queued {
                return;
            }
            match self.queue.pop_front() {
                Some((end, d)) => self.deliver(end, d),
                None if !drained => break,
                None => {}
            }
        }
        panic!("nothing was sent to peer {i}");
    }
}

/// Regression (simulator seed 90006, 40 peers × 2,000 messages, heavy faults): bob's
/// responder announced the instance of his chat with alice in its `Challenge`; the chat
/// then ended before alice's `Finish` arrived, so the `Finish` opened a new chat whose
/// message ids restarted at 1 under a new instance, while alice still held the old
/// instance, took bob's new id 1 for a duplicate, hid it, and acknowledged it: bob was told
/// "delivered" for a message alice never saw.
#[test]
fn a_chat_that_ends_during_a_handshake_never_lends_its_instance_to_the_next_chat() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    w.peers[1].send(w.now, &alice, "first").unwrap();
    w.run();
    assert_eq!(messages(&w.take(0)).len(), 1);
    w.cut(0, 1);
    w.run();
    // Only alice redials: dials towards her are refused.
    w.offline[0] = true;
    w.peers[0].retry_now(w.now, &bob).unwrap();
    w.run_until_bytes_for(0); // bob's Challenge is on its way to alice
    w.peers[1].close_chat(w.now, &alice, "bye").unwrap();
    w.offline[0] = false;
    w.advance(Duration::from_secs(60));
    // However the handshake ends, a chat they reopen must show alice every message.
    let _ = w.peers[1].connect(w.now, &alice);
    w.run();
    accept_all_requests(&mut w);
    w.advance(Duration::from_secs(60));
    let id = w.peers[1].send(w.now, &alice, "second").unwrap();
    w.advance(Duration::from_secs(60));
    let shown = messages(&w.take(0));
    let delivered = delivered(&w.take(1));
    assert!(
        delivered.contains(&id),
        "bob was never told it was delivered"
    );
    assert_eq!(
        shown.iter().filter(|m| m.2 == "second").count(),
        1,
        "bob was told \"delivered\"; alice must have been shown it once: {shown:?}"
    );
}

#[test]
fn a_registry_that_goes_silent_is_noticed_within_two_ping_intervals_and_redialled() {
    let mut w = world3();
    w.register_all();
    w.registry_silent = true;
    let config = PeerConfig::default();
    let allowed = config.registry_ping_interval * 2;
    assert_eq!(allowed, Duration::from_secs(60));
    w.advance(allowed + Duration::from_secs(1));
    let lost = w.take(0).into_iter().find_map(|e| match e {
        Event::RegistryLost { reason, retry_at } => Some((reason, retry_at)),
        _ => None,
    });
    let (reason, retry_at) = lost.expect("the silence was noticed");
    assert_eq!(reason, "the registry stopped answering");
    assert!(retry_at.is_some(), "and the registry is dialled again");
    // Silent still, the new connection is given up in turn; once the registry answers,
    // the registration comes back.
    w.registry_silent = false;
    w.advance(allowed * 2);
    let events = w.take(0);
    assert!(events.contains(&Event::Registered), "{events:?}");
}

#[test]
fn durable_state_leaves_the_core_in_order_and_restores_the_same_peer() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    w.offline[1] = true;
    w.cut(0, 1);
    w.run();
    let id = w.peers[0].send(w.now, &bob, "kept").unwrap();
    w.run();
    // What the core holds is exactly what it asked to store.
    assert_eq!(w.peers[0].state(), &w.disks[0]);
    assert_eq!(w.disks[0].queued_len(&bob), 1);
    // A restart from the disk carries the contact and the waiting message.
    w.restart_peer(0, PeerConfig::default());
    w.offline[1] = false;
    w.peers[0].register(w.now);
    w.advance(Duration::from_secs(120));
    assert_eq!(delivered(&w.take(0)), vec![id]);
    let shown = messages(&w.take(1));
    assert_eq!(shown.iter().filter(|m| m.2 == "kept").count(), 1);
}

/// Accepts every connection request peers `0` and `1` were shown.
fn accept_all_requests(w: &mut World) {
    for i in [0, 1] {
        let requests: Vec<u64> = w.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::ConnectionRequest { request, .. } => Some(*request),
                _ => None,
            })
            .collect();
        for request in requests {
            let _ = w.peers[i].accept(w.now, request);
        }
    }
}

/// A data directory restored from a copy taken after message #1 numbers its next message
/// #2 again under the same instance; the contact, who has #2 and #3 already, took it for a
/// resend, hid it and acknowledged it: "delivered" for a message never shown.
#[test]
fn a_store_restored_from_an_older_copy_never_gets_a_receipt_for_a_message_not_shown() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    w.peers[0].send(w.now, &bob, "one").unwrap();
    w.run();
    let backup = w.disks[0].clone();
    for text in ["two", "three"] {
        w.peers[0].send(w.now, &bob, text).unwrap();
    }
    w.run();
    assert_eq!(delivered(&w.take(0)), vec![1, 2, 3]);
    assert_eq!(messages(&w.take(1)).len(), 3);

    w.disks[0] = backup;
    w.restart_peer(0, PeerConfig::default());
    w.peers[0].register(w.now);
    w.run();
    let _ = w.peers[0].connect(w.now, &bob);
    // Queued before the chat is up: it goes out as #2, the id bob already holds.
    let again = w.peers[0].send(w.now, &bob, "four").unwrap();
    assert_eq!(again, 2, "the older copy numbers from where it was");
    w.run();
    accept_all_requests(&mut w);
    w.advance(Duration::from_secs(60));
    let after = w.peers[0].send(w.now, &bob, "five").unwrap();
    w.advance(Duration::from_secs(60));

    let events = w.take(0);
    let shown = messages(&w.take(1));
    assert!(
        events.contains(&Event::StoreBehindContact {
            nick: bob.clone(),
            stored_upto: 3
        }),
        "{events:?}"
    );
    assert!(
        !delivered(&events).contains(&again),
        "\"four\" was reported delivered; bob was shown {shown:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Failed { id, .. } if *id == again)),
        "\"four\" is failed with a reason, not left waiting: {events:?}"
    );
    assert!(after > 3, "new ids continue after bob's #3, not {after}");
    assert_eq!(delivered(&events), vec![after]);
    assert_eq!(
        shown.iter().map(|m| m.2.as_str()).collect::<Vec<_>>(),
        vec!["five"]
    );
}

#[test]
fn a_nick_held_by_someone_online_is_tried_again_and_a_reserved_one_is_not() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_peer(0);
    // Another key under alice's nick, while alice is online: refused, tried again later.
    w.replace_peer(1, test_keys::identity(5, "alice"));
    let events = w.register_peer(1);
    assert!(events.contains(&Event::RegistrationFailed(RegisterError::NickTaken)));
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::RegistryLost {
                retry_at: Some(_),
                ..
            }
        )),
        "{events:?}"
    );
    // Alice leaves; her nick stays bound to her key: the other key gives up.
    w.peers[0].shutdown(w.now);
    w.advance(Duration::from_secs(300));
    let events = w.take(1);
    assert!(
        events.contains(&Event::RegistrationFailed(RegisterError::NickReserved)),
        "{events:?}"
    );
    w.take(1);
    w.advance(Duration::from_secs(600));
    assert!(
        !w.take(1)
            .iter()
            .any(|e| matches!(e, Event::RegistrationFailed(_))),
        "no more attempts after a reservation"
    );
}

#[test]
fn a_configured_fingerprint_replaces_a_verified_pin_of_another_key_and_is_stored() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    let bob = w.nick(1);
    let first = test_keys::rsa(9).public().fingerprint();
    let second = test_keys::rsa(8).public().fingerprint();
    w.peers[0].import_verified(w.now, &bob, first);
    w.peers[0].import_verified(w.now, &bob, second);
    w.run();
    let stored = w.disks[0]
        .contacts
        .get(&bob)
        .map(|c| (c.key.fingerprint(), c.verified));
    assert_eq!(stored, Some((Some(second), true)));
    assert_eq!(w.peers[0].state(), &w.disks[0]);
}

#[test]
fn contacts_are_bounded_on_every_path_that_makes_one() {
    let config = PeerConfig {
        max_contacts: 1,
        accept_policy: AcceptPolicy::AcceptAll,
        ..PeerConfig::default()
    };
    let mut w = World::new(&["alice", "bob", "carol"], config);
    w.register_all();
    let (alice, carol) = (w.nick(0), w.nick(2));
    w.peers[1].send(w.now, &alice, "hi").unwrap();
    w.run();
    assert_eq!(
        w.peers[1].connect(w.now, &carol),
        Err(CommandError::TooManyContacts(1))
    );
    assert_eq!(
        w.peers[1].block(w.now, &carol),
        Err(CommandError::TooManyContacts(1))
    );
    // Carol asking is refused too, before any lookup.
    let bob = w.nick(1);
    w.peers[2].connect(w.now, &bob).unwrap();
    w.run();
    assert_eq!(w.peers[1].state().contacts.len(), 1);
    assert!(w.take(2).iter().any(|e| matches!(
        e,
        Event::ConnectionLost {
            reason: ConnectionLost::Handshake(HandshakeError::Rejected(
                crate::peer_wire::RejectReason::Busy
            )),
            ..
        }
    )));
}

/// docs/PROTOCOL.md §4.5: a `Reject(BadProof)` that answers our `Finish` ends the chat; a
/// wrong proof does not become right by retrying (it used to be retried 8 times).
#[test]
fn a_rejected_finish_ends_the_chat_without_retrying() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    // Let the Hello through untouched, then corrupt alice's next frame: her Finish.
    w.run_until_bytes_for(1);
    w.tamper_next = Some(0);
    w.run();
    let ea = w.take(0);
    assert!(
        ea.contains(&Event::ChatClosed {
            nick: bob.clone(),
            reason: CloseReason::Failed(ChatFailure::Handshake(HandshakeError::Rejected(
                crate::peer_wire::RejectReason::BadProof
            ))),
        }),
        "{ea:?}"
    );
    assert_eq!(w.peers[0].chat_state(&bob), None);
    w.advance(Duration::from_secs(600));
    assert!(
        !w.take(0).iter().any(|e| matches!(
            e,
            Event::ChatState {
                state: ChatState::Connecting,
                ..
            }
        )),
        "alice dialled bob again"
    );
}

#[test]
fn an_inbound_connection_that_sends_no_hello_is_dropped_after_the_hello_timeout() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    let idle = w.peers[1].accept_incoming(w.now).unwrap();
    w.advance(PeerConfig::default().hello_timeout - Duration::from_secs(1));
    assert!(w.peers[1].conns.contains_key(&idle));
    w.advance(Duration::from_secs(2));
    assert!(
        !w.peers[1].conns.contains_key(&idle),
        "an idle stranger holds a slot for the whole handshake timeout"
    );
}

#[test]
fn strangers_holding_every_inbound_slot_give_way_to_a_real_peer() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    let slots = PeerConfig::default().max_pending_inbound;
    let idle: Vec<ConnId> = (0..slots)
        .map(|_| w.peers[1].accept_incoming(w.now).unwrap())
        .collect();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    assert!(
        w.events[1]
            .iter()
            .any(|e| matches!(e, Event::ConnectionRequest { .. })),
        "bob never heard of alice: {:?}",
        w.events[1]
    );
    // The oldest stranger made room.
    assert!(!w.peers[1].conns.contains_key(&idle[0]));
    assert!(w.peers[1].conns.contains_key(&idle[1]));
}

#[test]
fn a_newer_request_from_the_same_nick_replaces_the_older_and_the_older_is_reported_gone() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    let bob = w.nick(1);
    let alice = w.nick(0);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let first = w.request_id(1);
    w.take(1);
    // Alice restarts (her old connection is still open at bob's) and dials again.
    w.replace_peer(0, test_keys::identity(0, "alice"));
    w.peers[0].register(w.now);
    w.run();
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let eb = w.take(1);
    assert!(
        eb.contains(&Event::RequestGone {
            request: first,
            nick: alice.clone()
        }),
        "{eb:?}"
    );
    let requests: Vec<u64> = eb
        .iter()
        .filter_map(|e| match e {
            Event::ConnectionRequest { request, .. } => Some(*request),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "{eb:?}");
    assert!(matches!(
        w.peers[1].accept(w.now, first),
        Err(CommandError::NoRequest(_))
    ));
    w.peers[1].accept(w.now, requests[0]).unwrap();
    w.run();
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Connected));
}

#[test]
fn a_request_left_unanswered_is_reported_gone_when_it_times_out() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    let bob = w.nick(1);
    w.peers[0].connect(w.now, &bob).unwrap();
    w.run();
    let request = w.request_id(1);
    w.take(1);
    w.advance(PeerConfig::default().decision_timeout + Duration::from_secs(1));
    assert!(w.take(1).contains(&Event::RequestGone {
        request,
        nick: w.nick(0)
    }));
}

/// Simulator seed 20005 (40 peers × 2,000 messages, heavy faults with impostors): an
/// impostor's refused `Hello` under a contact's nick used to stop every delivery to the
/// real contact until the user ran /verify or /trust, so anyone could hold a contact's
/// messages back. With the certificate pinned, deliveries reach only the pinned key: they
/// go on, and the warning stays.
#[test]
fn an_impostor_refused_under_a_contacts_nick_cannot_hold_back_messages_to_the_real_contact() {
    let mut w = World::new(&["alice", "bob", "mallory"], PeerConfig::default());
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    let alice = w.nick(0);
    w.peers[0].close_chat(w.now, &bob, "later").unwrap();
    w.run();
    w.offline[1] = true;
    let id = w.peers[0].send(w.now, &bob, "still for bob").unwrap();
    // The chat gives up redialling; the contact's delivery schedule takes over.
    w.advance(Duration::from_secs(30 * 60));
    assert_eq!(w.peers[0].chat_state(&bob), None);
    // Mallory claims to be bob with keys of her own, and dials alice directly.
    let impostor =
        crate::identity::Identity::new(bob.clone(), test_keys::rsa(5), test_keys::onion(5));
    w.replace_peer(2, impostor);
    w.peers[2].connect(w.now, &alice).unwrap();
    w.run();
    assert!(
        w.take(0)
            .iter()
            .any(|e| matches!(e, Event::KeyChanged { nick, .. } if *nick == bob)),
        "alice was not warned"
    );
    w.offline[1] = false;
    w.advance(Duration::from_secs(20 * 60));
    assert!(
        delivered(&w.take(0)).contains(&id),
        "the message to bob was held back"
    );
    assert_eq!(
        messages(&w.take(1)),
        vec![("alice".into(), id, "still for bob".into())]
    );
    assert!(
        w.peers[0]
            .contacts()
            .into_iter()
            .any(|c| c.nick == bob && c.conflict.is_some()),
        "the warning must stay until the user checks"
    );
}

/// Strangers dialling bob under nicks he never talked to make him look those nicks up. He
/// used to look up every one of them, exceed the registry's request budget and lose his
/// registration; now the lookups are budgeted (the rest are refused as busy and retried
/// by their initiators), and a lookup over the registry's budget is answered `Busy`.
#[test]
fn a_crowd_of_strangers_dialling_in_cannot_cost_a_peer_its_registration() {
    let nicks: Vec<String> = std::iter::once("bob".to_owned())
        .chain((0..20).map(|i| format!("stranger{i}")))
        .collect();
    let nicks: Vec<&str> = nicks.iter().map(String::as_str).collect();
    let registry = RegistryConfig {
        burst: 20,
        per_second: 1,
        ..RegistryConfig::default()
    };
    let mut w = World::with_registry(registry, &nicks, PeerConfig::default());
    w.register_all();
    let bob = w.nick(0);
    for i in 1..nicks.len() {
        w.peers[i].connect(w.now, &bob).unwrap();
    }
    w.run();
    let eb = w.take(0);
    assert!(
        !eb.iter()
            .any(|e| matches!(e, Event::RegistryLost { .. } | Event::RegistryError(_))),
        "{eb:?}"
    );
    assert!(
        w.registry.user_count() == nicks.len(),
        "bob lost his registration"
    );
    // Every stranger was answered: a request for those bob could look up, busy for the rest.
    let requests = eb
        .iter()
        .filter(|e| matches!(e, Event::ConnectionRequest { .. }))
        .count();
    assert!((1..nicks.len()).contains(&requests), "{requests} requests");
}

/// Alice and bob became contacts and closed their chat; bob is gone, and alice's message
/// `text` waits for him. Returns bob's nick and the message's id.
fn message_waiting_for_bob(w: &mut World, text: &str) -> (Nick, u64) {
    w.register_peer(0);
    w.register_peer(1);
    w.open_chat(0, 1);
    let bob = w.nick(1);
    w.peers[0].close_chat(w.now, &bob, "later").unwrap();
    w.run();
    w.offline[1] = true;
    let id = w.peers[0].send(w.now, &bob, text).unwrap();
    (bob, id)
}

/// Presence frames a slow reader could not take are dropped by the registry, which then
/// sends `Resync`. The peer cannot know who came online meanwhile, so it tries each
/// contact it holds messages for at once, instead of at its next scheduled attempt.
#[test]
fn a_peer_told_it_missed_presence_tries_its_queued_contacts_at_once() {
    let mut w = world3();
    let (bob, id) = message_waiting_for_bob(&mut w, "waiting for bob");
    // The chat gives up redialling; the contact's delivery schedule takes over.
    w.advance(Duration::from_secs(30 * 60));
    let next = w.peers[0].contact(&bob).and_then(|c| c.next_delivery);
    assert!(next.is_some_and(|t| t > w.now + Duration::from_secs(1)));
    w.offline[1] = false;
    // Carol's arrival is dropped from alice's presence: her registry link is slow.
    let alice_at_registry = w.registry_conn_of(0).expect("alice is connected");
    w.slow_readers.insert(alice_at_registry);
    w.register_peer(2);
    w.slow_readers.clear();
    w.advance(RegistryConfig::default().presence_interval);
    let ea = w.take(0);
    assert!(ea.contains(&Event::Presence(crate::registry::Presence::Resync)));
    assert!(
        delivered(&ea).contains(&id),
        "the queued message waited for its schedule: {ea:?}"
    );
}

#[test]
fn the_view_shows_the_registry_requests_chats_unread_counts_and_the_outbox() {
    let mut w = world3();
    let (alice, bob, carol) = (w.nick(0), w.nick(1), w.nick(2));
    assert_eq!(w.peers[0].view().registry, RegistryView::Idle);
    w.register_all();
    let view = w.peers[0].view();
    assert_eq!(view.registry, RegistryView::Registered);
    assert_eq!(view.nick, alice);
    assert_eq!(
        view.fingerprint,
        w.peers[0].identity().rsa.public().fingerprint()
    );
    // Bob asks: alice's view holds the request until she answers it.
    w.peers[1].connect(w.now, &alice).unwrap();
    w.run();
    let requests = w.peers[0].view().requests;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].nick, bob);
    assert_eq!(
        requests[0].fingerprint,
        w.peers[1].identity().rsa.public().fingerprint()
    );
    w.peers[0].accept(w.now, requests[0].request).unwrap();
    w.run();
    w.peers[1].send(w.now, &alice, "one").unwrap();
    w.peers[1].send(w.now, &alice, "two").unwrap();
    w.run();
    let view = w.peers[0].view();
    assert!(view.requests.is_empty());
    let chat = view
        .chats
        .iter()
        .find(|c| c.nick == bob)
        .expect("a chat with bob");
    assert_eq!((chat.state.clone(), chat.unread), (ChatState::Connected, 2));
    let contact = view
        .contacts
        .iter()
        .find(|c| c.nick == bob)
        .expect("bob is a contact");
    assert_eq!(contact.unread, 2);
    w.peers[0].mark_read(&bob);
    assert_eq!(w.peers[0].view().chats[0].unread, 0);
    // A message to carol, who does not take connections, waits in the outbox.
    w.offline[2] = true;
    w.peers[0].send(w.now, &carol, "wait for me").unwrap();
    w.run();
    assert_eq!(w.peers[0].view().queued, 1);
    // The registry goes silent: the view says the link is down, and why.
    w.registry_silent = true;
    w.advance(Duration::from_secs(120));
    assert!(
        matches!(
            w.peers[0].view().registry,
            RegistryView::Down { .. } | RegistryView::Connecting { after: Some(_) }
        ),
        "{:?}",
        w.peers[0].view().registry
    );
}

#[test]
fn a_contact_who_comes_back_on_another_port_is_followed_there_and_gets_what_waits() {
    let mut w = world3();
    w.register_peer(0);
    w.register_peer(2);
    w.open_chat(0, 2);
    let carol = w.nick(2);
    // Carol's process ends without a word; she will come back with the same keys on
    // another port. Meanwhile alice's message waits, and her chat redials the old port.
    let old_port = w.peers[2].port();
    let config = PeerConfig {
        port: old_port + 1,
        accept_policy: AcceptPolicy::AcceptAll,
        ..PeerConfig::default()
    };
    w.offline[2] = true;
    w.restart_peer(2, config);
    let id = w.peers[0].send(w.now, &carol, "still there?").unwrap();
    w.advance(Duration::from_secs(5));
    assert!(
        matches!(
            w.peers[0].chat_state(&carol),
            Some(ChatState::Retrying { .. })
        ),
        "{:?}",
        w.peers[0].chat_state(&carol)
    );
    // She registers: the registry's presence says where she is, and alice redials there at
    // once (not at her next retry), so the message arrives.
    w.offline[2] = false;
    let mut ec = w.register_peer(2);
    w.advance(RegistryConfig::default().presence_interval);
    ec.extend(w.take(2));
    let ea = w.take(0);
    assert!(
        delivered(&ea).contains(&id),
        "the message did not follow carol to her new port: {ea:?}"
    );
    assert!(
        messages(&ec).iter().any(|m| m.2 == "still there?"),
        "{ec:?}"
    );
}

#[test]
fn ports_the_registry_invents_for_a_contact_never_keep_us_from_the_pinned_one() {
    let mut w = world3();
    let (_, id) = message_waiting_for_bob(&mut w, "for bob");
    w.advance(Duration::from_secs(60));
    let pinned = w.peers[1].port();
    w.offline[1] = false;
    let dials_before = w.dials.len();
    // Every second, the registry says bob joined, each time at another port where nothing
    // of his listens. His certificate is genuine (a registry has it); nothing signs the
    // port.
    let mut delivered_after = None;
    for k in 1..=1200u16 {
        w.registry_says(0, bob_joined_at(&w, pinned + k));
        w.advance(Duration::from_secs(1));
        if delivered(&w.take(0)).contains(&id) {
            delivered_after = Some(k);
            break;
        }
    }
    let to_bob = |port_is_pinned: bool| {
        w.dials[dials_before..]
            .iter()
            .filter(|(i, t)| {
                *i == 0
                    && matches!(t, Target::Peer { port, .. } if (*port == pinned) == port_is_pinned)
            })
            .count()
    };
    let (invented, at_pinned) = (to_bob(false), to_bob(true));
    assert!(
        delivered_after.is_some(),
        "not delivered while the registry kept inventing ports: {invented} dials at invented ports, {at_pinned} at the pinned one"
    );
    // Presence starts at most one attempt per 30 s, and after a failed hint the pinned
    // port comes next.
    assert!(invented >= 1, "the hint was never tried");
    assert!(
        invented <= at_pinned,
        "{invented} invented, {at_pinned} pinned"
    );
}

/// A presence push saying bob (peer 1, with his genuine certificate) joined at `port`.
fn bob_joined_at(w: &World, port: u16) -> crate::registry::ServerMessage {
    crate::registry::ServerMessage::Presence(vec![crate::registry::Presence::Joined(
        crate::registry::UserRecord {
            certificate: w.peers[1].identity().certificate.clone(),
            port,
        },
    )])
}

#[test]
fn a_message_written_after_the_peer_asked_to_close_waits_for_the_next_chat() {
    let mut w = world3();
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    w.peers[1].close_chat(w.now, &alice, "bye").unwrap();
    // Bob's Close reaches alice, who answers CloseAck; then she writes.
    w.run_until_bytes_for(0);
    while let Some((end, d)) = w.queue.pop_front() {
        let to_alice = end.0 == Host::Peer(0);
        w.deliver(end, d);
        if to_alice {
            break;
        }
    }
    while let Some(out) = w.peers[0].poll_output() {
        w.peer_output(0, out);
    }
    assert_eq!(w.peers[0].chat_state(&bob), Some(&ChatState::Closing));
    let id = w.peers[0]
        .send(w.now, &bob, "written while closing")
        .unwrap();
    w.run();
    let ea = w.take(0);
    assert!(
        !ea.iter()
            .any(|e| matches!(e, Event::Sent { id: s, .. } if *s == id)),
        "sent on a chat that was closing: {ea:?}"
    );
    assert!(messages(&w.take(1)).is_empty());
    // It waits, and reaches bob with the next chat.
    assert_eq!(w.peers[0].contact(&bob).unwrap().queued, 1);
    w.peers[0].retry_now(w.now, &bob).unwrap();
    w.advance(Duration::from_secs(30));
    let shown = messages(&w.take(1));
    assert_eq!(shown.len(), 1, "{shown:?}");
}

/// A message stored (and acknowledged) but never shown — the process ended first — is
/// still unread after a restart, until the user reads it.
#[test]
fn messages_not_read_before_a_restart_are_still_unread_after_it() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    w.open_chat(0, 1);
    let (alice, bob) = (w.nick(0), w.nick(1));
    for text in ["one", "two"] {
        w.peers[0].send(w.now, &bob, text).unwrap();
    }
    w.run();
    assert_eq!(messages(&w.take(1)).len(), 2);
    w.restart_peer(1, PeerConfig::default());
    assert_eq!(w.peers[1].contact(&alice).map(|c| c.unread), Some(2));
    w.peers[1].mark_read(&alice);
    w.run();
    w.restart_peer(1, PeerConfig::default());
    assert_eq!(w.peers[1].contact(&alice).map(|c| c.unread), Some(0));
}

/// A message the contact stored but whose acknowledgement was lost, then withdrawn: the
/// contact's `Resume` names it, and the store knows it (no "older copy" alarm, nothing
/// else failed).
#[test]
fn a_withdrawn_message_the_contact_stored_is_not_taken_for_a_restored_store() {
    let mut w = World::new(&["alice", "bob"], PeerConfig::default());
    w.register_all();
    w.open_chat(0, 1);
    let bob = w.nick(1);
    let id = w.peers[0]
        .send(w.now, &bob, "stored, never acknowledged")
        .unwrap();
    w.run_until_bytes_for(1);
    let (end, delivery) = w.queue.pop_front().unwrap();
    w.deliver(end, delivery);
    // Bob stored it; his acknowledgement is lost with the connection.
    w.drain_outputs();
    w.cut(0, 1);
    w.run();
    w.peers[0].cancel(w.now, &bob, id).unwrap();
    let after = w.peers[0].send(w.now, &bob, "next").unwrap();
    w.advance(Duration::from_secs(120));
    let events = w.take(0);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StoreBehindContact { .. })),
        "{events:?}"
    );
    assert!(delivered(&events).contains(&after), "{events:?}");
}
