//! One scripted scenario per fault kind, each asserting what the user sees: a message is
//! delivered once (or reported failed, when its contact refused the chat), never lost
//! silently, never shown twice, whatever crashes on either side.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use core::time::Duration;

use p2pchat_core::peer::{ChatFailure, ChatState, CloseReason, ConnectionLost, Event};
use p2pchat_core::registry::RegisterError;
use p2pchat_sim::{Fate, SimConfig, World};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A scripted world of `peers` peers, all registered.
fn world(peers: usize) -> World {
    let mut w = World::new(SimConfig::scripted(1, peers), None).unwrap();
    w.run_for(secs(30));
    for i in 0..peers {
        assert!(w.is_registered(i), "peer {i} did not register");
    }
    w
}

/// Peer `a` opens a chat with `b`, which accepts.
fn chat(w: &mut World, a: usize, b: usize) {
    w.connect(a, b).unwrap();
    w.run_for(secs(30));
    assert_eq!(state(w, a, b), Some(ChatState::Connected));
    assert_eq!(state(w, b, a), Some(ChatState::Connected));
}

fn state(w: &World, a: usize, b: usize) -> Option<ChatState> {
    w.peer(a)?.chat_state(&w.nick(b)).cloned()
}

fn no_violations(w: &World) {
    assert!(w.violations().is_empty(), "{:?}", w.violations());
}

#[test]
fn refused_dials_are_retried_and_the_chat_connects_once_the_network_recovers() {
    let mut w = world(2);
    w.faults_mut().connect_refused = 1.0;
    w.connect(0, 1).unwrap();
    let m = w.send(0, 1, 100).unwrap();
    w.run_for(secs(20));
    let log = w.take_log(0);
    assert!(log.iter().any(|e| matches!(
        e,
        Event::ConnectionLost { reason: ConnectionLost::ConnectFailed(r), .. } if r.contains("SOCKS5")
    )));
    assert!(matches!(state(&w, 0, 1), Some(ChatState::Retrying { .. })));
    assert_eq!(w.fate(m), Some((Fate::Pending, 0)));
    w.faults_mut().connect_refused = 0.0;
    w.run_for(secs(300));
    assert_eq!(state(&w, 0, 1), Some(ChatState::Connected));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    no_violations(&w);
}

#[test]
fn a_contact_whose_every_dial_is_refused_keeps_the_message_waiting_then_gets_it_once() {
    let mut w = world(2);
    w.faults_mut().connect_refused = 1.0;
    w.connect(0, 1).unwrap();
    let m = w.send(0, 1, 100).unwrap();
    w.run_for(secs(3600));
    // The chat gave up; the message did not.
    let log = w.take_log(0);
    assert!(log.iter().any(|e| matches!(
        e,
        Event::ChatClosed {
            reason: CloseReason::Failed(ChatFailure::Unreachable { .. }),
            ..
        }
    )));
    assert_eq!(w.fate(m), Some((Fate::Pending, 0)));
    w.faults_mut().connect_refused = 0.0;
    // Delivery attempts back off up to 15 minutes.
    w.run_for(secs(20 * 60));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    no_violations(&w);
}

#[test]
fn a_dial_that_is_never_answered_times_out_and_is_retried() {
    let mut w = world(2);
    w.faults_mut().connect_timeout = 1.0;
    w.connect(0, 1).unwrap();
    let m = w.send(0, 1, 100).unwrap();
    w.run_for(secs(125));
    let log = w.take_log(0);
    assert!(
        log.iter().any(|e| matches!(
            e,
            Event::ConnectionLost {
                reason: ConnectionLost::Timeout,
                ..
            }
        )),
        "{log:?}"
    );
    w.faults_mut().connect_timeout = 0.0;
    w.run_for(secs(600));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    no_violations(&w);
}

#[test]
fn a_stream_reset_mid_message_is_recovered_and_the_message_shown_once() {
    let mut w = world(2);
    chat(&mut w, 0, 1);
    let m = w.send(0, 1, 4000).unwrap();
    // The message is on the wire (a one-way trip takes tens of ms at least).
    w.run_for(Duration::from_millis(5));
    w.reset_streams_between(0, 1);
    w.run_for(secs(120));
    assert!(
        w.take_log(1)
            .iter()
            .any(|e| matches!(e, Event::ConnectionLost { .. }))
    );
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    assert_eq!(state(&w, 0, 1), Some(ChatState::Connected));
    no_violations(&w);
}

#[test]
fn messages_sent_during_a_partition_are_delivered_once_after_it_heals() {
    let mut w = world(3);
    chat(&mut w, 0, 1);
    w.partition(&[0]);
    let sent: Vec<u64> = (0..3).map(|_| w.send(0, 1, 50).unwrap()).collect();
    w.run_for(secs(20));
    assert!(sent.iter().all(|m| w.fate(*m) == Some((Fate::Pending, 0))));
    assert_ne!(state(&w, 0, 1), Some(ChatState::Connected));
    w.heal();
    w.run_for(secs(300));
    for m in sent {
        assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    }
    no_violations(&w);
}

#[test]
fn messages_sent_into_an_hour_long_partition_wait_and_are_delivered_once_it_heals() {
    let mut w = world(3);
    chat(&mut w, 0, 1);
    w.partition(&[0]);
    let m = w.send(0, 1, 50).unwrap();
    w.run_for(secs(3600));
    assert_eq!(w.fate(m), Some((Fate::Pending, 0)));
    w.heal();
    w.run_for(secs(20 * 60));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    no_violations(&w);
}

#[test]
fn a_crashed_senders_message_survives_on_its_disk_and_is_delivered_once() {
    let mut w = world(2);
    chat(&mut w, 0, 1);
    let m = w.send(0, 1, 100).unwrap();
    w.crash(0);
    assert_eq!(w.fate(m).map(|f| f.0), Some(Fate::Pending));
    w.run_for(secs(10));
    // It comes back with its identity and its disk, and takes its registration back.
    w.restart(0);
    w.run_for(secs(60));
    assert!(w.is_registered(0));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    let m2 = w.send(0, 1, 100).unwrap();
    w.run_for(secs(60));
    assert_eq!(w.fate(m2), Some((Fate::Delivered, 1)));
    no_violations(&w);
}

#[test]
fn a_receiver_that_crashed_after_storing_a_message_acknowledges_it_without_showing_it_again() {
    let mut w = world(2);
    chat(&mut w, 0, 1);
    let m = w.send(0, 1, 100).unwrap();
    // Step until the receiver has stored (shown) it, then cut the acknowledgement and
    // crash it.
    for _ in 0..10_000 {
        if w.fate(m).is_some_and(|(_, shown)| shown == 1) {
            break;
        }
        w.run_for(Duration::from_millis(1));
    }
    assert_eq!(w.fate(m), Some((Fate::Pending, 1)));
    w.reset_streams_between(0, 1);
    w.crash(1);
    w.run_for(secs(5));
    w.restart(1);
    w.run_for(secs(300));
    // The sender sent it again; the receiver's disk knew it: acknowledged, not shown.
    assert_eq!(state(&w, 0, 1), Some(ChatState::Connected));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    no_violations(&w);
}

#[test]
fn after_a_registry_crash_peers_register_again_and_chats_carry_on() {
    let mut w = world(3);
    chat(&mut w, 0, 1);
    w.crash_registry();
    // An open chat does not need the registry.
    let m = w.send(0, 1, 100).unwrap();
    w.run_for(secs(10));
    assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    assert!(w.take_log(2).iter().any(|e| matches!(
        e,
        Event::RegistryLost {
            retry_at: Some(_),
            ..
        }
    )));
    w.restart_registry_now();
    w.run_for(secs(300));
    assert_eq!(w.registry_users(), 3);
    chat(&mut w, 2, 0);
    no_violations(&w);
}

#[test]
fn a_latency_spike_slows_messages_down_but_keeps_them_in_order_and_whole() {
    let mut w = world(2);
    chat(&mut w, 0, 1);
    w.latency_spike(secs(60));
    let sent: Vec<u64> = (0..20)
        .map(|i| w.send(0, 1, 20 + i * 50).unwrap())
        .collect();
    w.run_for(secs(300));
    for m in sent {
        assert_eq!(w.fate(m), Some((Fate::Delivered, 1)));
    }
    let summary = w.summary();
    assert_eq!(summary.out_of_order, 0);
    no_violations(&w);
}

#[test]
fn a_peer_that_leaves_closes_its_chats_and_unregisters() {
    let mut w = world(2);
    chat(&mut w, 0, 1);
    w.take_log(0);
    w.leave(1);
    w.run_for(secs(30));
    assert!(w.take_log(0).iter().any(|e| matches!(
        e,
        Event::ChatClosed {
            reason: CloseReason::ByPeer(_),
            ..
        }
    )));
    assert_eq!(w.registry_users(), 1);
    assert!(w.peer(1).is_none());
    no_violations(&w);
}

#[test]
fn a_denied_request_fails_the_queued_messages_with_the_reason() {
    let mut w = world(2);
    w.deny_requests(1, 0);
    w.connect(0, 1).unwrap();
    let m = w.send(0, 1, 100).unwrap();
    w.run_for(secs(60));
    assert_eq!(w.fate(m), Some((Fate::Failed, 0)));
    assert!(w.take_log(0).iter().any(|e| matches!(
        e,
        Event::ChatClosed {
            reason: CloseReason::Denied(_),
            ..
        }
    )));
    no_violations(&w);
}

#[test]
fn an_impostor_cannot_register_a_departed_peers_nick_while_its_binding_holds() {
    let mut w = world(3);
    chat(&mut w, 0, 1);
    w.leave(1);
    w.run_for(secs(30));
    let impostor = w.add_impostor(1).unwrap();
    w.run_for(secs(30));
    assert!(!w.is_registered(impostor));
    let log = w.take_log(impostor);
    assert!(
        log.iter()
            .any(|e| matches!(e, Event::RegistrationFailed(RegisterError::NickReserved))),
        "{log:?}"
    );
    // After a registry crash too: the binding is on its disk.
    w.crash_registry();
    w.run_for(secs(5));
    w.restart_registry_now();
    w.run_for(secs(120));
    assert!(!w.is_registered(impostor));
    no_violations(&w);
}

#[test]
fn an_impostor_at_a_wiped_registry_never_gets_a_chat_with_a_contact_of_the_real_peer() {
    let mut w = world(3);
    chat(&mut w, 0, 1);
    w.leave(1);
    w.run_for(secs(30));
    // The registry loses its bindings: now anyone can register "peer 1"'s nick.
    w.wipe_registry();
    w.run_for(secs(5));
    w.restart_registry_now();
    w.run_for(secs(60));
    let impostor = w.add_impostor(1).unwrap();
    w.run_for(secs(60));
    assert!(w.is_registered(impostor));
    // Peer 0 pinned peer 1's key: the impostor is refused, loudly.
    w.connect(impostor, 0).unwrap();
    w.run_for(secs(120));
    assert_ne!(state(&w, impostor, 0), Some(ChatState::Connected));
    let log = w.take_log(0);
    assert!(
        log.iter().any(|e| matches!(e, Event::KeyChanged { .. })),
        "{log:?}"
    );
    // A message peer 0 writes to peer 1 waits for the real one; the impostor never gets it.
    let m = w.send(0, 1, 50).unwrap();
    w.run_for(secs(600));
    assert_eq!(w.fate(m), Some((Fate::Pending, 0)));
    no_violations(&w);
}

#[test]
fn a_stream_the_targets_core_refuses_is_connected_then_closed_as_over_tor() {
    // Every inbound stream is refused by the core (no room): the runtime, like tor, has
    // already accepted it, so the dialer sees `Connected`, then `Closed`, not a failed dial.
    let mut config = SimConfig::scripted(1, 2);
    config.peer.max_pending_inbound = 0;
    let mut w = World::new(config, None).unwrap();
    w.run_for(secs(30));
    w.connect(0, 1).unwrap();
    w.run_for(secs(10));
    let log = w.take_log(0);
    assert!(
        log.iter().any(|e| matches!(
            e,
            Event::ConnectionLost {
                reason: ConnectionLost::Closed,
                ..
            }
        )),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|e| matches!(
            e,
            Event::ConnectionLost {
                reason: ConnectionLost::ConnectFailed(_),
                ..
            }
        )),
        "{log:?}"
    );
    let summary = w.summary();
    assert!(summary.inbound_refused > 0);
    assert_eq!(summary.dials_failed, 0);
    no_violations(&w);
}

#[test]
fn a_presence_watcher_that_stops_reading_is_told_to_resync_and_still_delivers_once() {
    let mut w = world(2);
    chat(&mut w, 0, 1);
    let first = w.send(0, 1, 100).unwrap();
    w.run_for(secs(10));
    assert_eq!(w.fate(first), Some((Fate::Delivered, 1)));
    // Bob leaves; alice writes to him while he is away.
    w.leave(1);
    w.run_for(secs(10));
    let waiting = w.send(0, 1, 100).unwrap();
    // Alice's registry connection stops reading while bob comes back: his return is
    // dropped from her presence.
    w.slow_reader(0, secs(40));
    w.run_for(secs(5));
    w.restart(1);
    w.run_for(secs(30));
    w.take_log(0);
    // She reads again: the registry tells her she missed presence.
    w.run_for(secs(20));
    let log = w.take_log(0);
    assert!(
        log.contains(&Event::Presence(p2pchat_core::registry::Presence::Resync)),
        "{log:?}"
    );
    w.run_for(secs(1800));
    assert_eq!(w.fate(waiting), Some((Fate::Delivered, 1)));
    no_violations(&w);
}
