//! End to end over real loopback sockets and real WebSocket, in `direct` mode: a registry
//! and peers driven by the async-std runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use core::time::Duration;

use async_std::net::TcpListener;
use async_std::task::block_on;
use p2pchat_async_std::{Answer, Command, PeerHandle, ServerSettings, Subscription};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{AcceptPolicy, ChatState, CloseReason, Event, PeerConfig};
use p2pchat_core::registry::{Registry, RegistryConfig};
use p2pchat_core::test_keys;

struct Net {
    registry_port: u16,
    stop: p2pchat_async_std::StopServer,
}

async fn start_registry() -> Net {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_port = listener.local_addr().unwrap().port();
    let core = Registry::new(RegistryConfig::default(), &mut test_keys::rng(1));
    let (stop, _task) =
        p2pchat_async_std::spawn_server(core, listener, ServerSettings::default(), None);
    Net {
        registry_port,
        stop,
    }
}

/// A running peer and its events; commands go through the handle (`Deref`).
struct TestPeer {
    handle: PeerHandle,
    updates: Subscription,
}

impl core::ops::Deref for TestPeer {
    type Target = PeerHandle;
    fn deref(&self) -> &PeerHandle {
        &self.handle
    }
}

async fn start_peer(net: &Net, i: usize, nick: &str, policy: AcceptPolicy) -> TestPeer {
    // One directory per peer started in this process (tests run in parallel).
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = p2pchat_tests::process::temp_dir(&format!("loopback-{nick}-{n}"));
    let store = p2pchat_async_std::local::scratch_store(&dir, nick).unwrap();
    let config = PeerConfig {
        accept_policy: policy,
        ..PeerConfig::default()
    };
    let (handle, updates) = p2pchat_async_std::local::start_direct_peer(
        config,
        test_keys::identity(i, nick),
        net.registry_port,
        store,
        &mut test_keys::rng(10 + i as u64),
    )
    .await
    .unwrap();
    let peer = TestPeer { handle, updates };
    wait_for(&peer, |e| *e == Event::Registered).await;
    peer
}

/// Waits (up to 20 s) for an event matching `want`; returns it.
async fn wait_for(peer: &TestPeer, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = async_std::future::timeout(Duration::from_secs(20), async {
        loop {
            match peer.updates.next_event().await {
                Some(e) if want(&e) => return e,
                Some(_) => continue,
                None => panic!("the peer stopped"),
            }
        }
    });
    deadline.await.expect("timed out waiting for an event")
}

fn nick(s: &str) -> Nick {
    Nick::new(s).unwrap()
}

#[test]
fn two_peers_chat_both_ways_with_acknowledgements_and_close() {
    block_on(async {
        let net = start_registry().await;
        let alice = start_peer(&net, 0, "alice", AcceptPolicy::Ask).await;
        let bob = start_peer(&net, 1, "bob", AcceptPolicy::Ask).await;
        alice
            .command(Command::Connect(nick("bob")))
            .await
            .unwrap()
            .unwrap();
        let request = match wait_for(&bob, |e| matches!(e, Event::ConnectionRequest { .. })).await {
            Event::ConnectionRequest {
                request, nick: n, ..
            } => {
                assert_eq!(n, nick("alice"));
                request
            }
            _ => unreachable!(),
        };
        bob.command(Command::Accept(request))
            .await
            .unwrap()
            .unwrap();
        wait_for(&alice, |e| {
            matches!(
                e,
                Event::ChatState {
                    state: ChatState::Connected,
                    ..
                }
            )
        })
        .await;
        let Answer::MessageId(id) = alice
            .command(Command::Send(nick("bob"), "hello bob".into()))
            .await
            .unwrap()
            .unwrap()
        else {
            panic!("no id")
        };
        let got = wait_for(&bob, |e| matches!(e, Event::Message { .. })).await;
        assert!(matches!(got, Event::Message { text, .. } if text == "hello bob"));
        wait_for(&alice, |e| {
            *e == Event::Delivered {
                nick: nick("bob"),
                id,
            }
        })
        .await;
        bob.command(Command::Send(nick("alice"), "hi alice".into()))
            .await
            .unwrap()
            .unwrap();
        let got = wait_for(&alice, |e| matches!(e, Event::Message { .. })).await;
        assert!(matches!(got, Event::Message { text, .. } if text == "hi alice"));
        alice
            .command(Command::Close(nick("bob"), "bye".into()))
            .await
            .unwrap()
            .unwrap();
        let closed = wait_for(&bob, |e| matches!(e, Event::ChatClosed { .. })).await;
        assert!(matches!(
            closed,
            Event::ChatClosed { reason: CloseReason::ByPeer(r), .. } if r == "bye"
        ));
        alice.command(Command::Shutdown).await.unwrap().unwrap();
        wait_for(&alice, |e| *e == Event::ShutdownComplete).await;
        net.stop.stop();
    });
}

#[test]
fn three_clients_chat_deny_close_and_quit_gracefully() {
    block_on(async {
        let net = start_registry().await;
        let alice = start_peer(&net, 0, "alice", AcceptPolicy::Ask).await;
        let bob = start_peer(&net, 1, "bob", AcceptPolicy::AcceptAll).await;
        let carol = start_peer(&net, 2, "carol", AcceptPolicy::AcceptAll).await;

        // alice ↔ bob, both ways.
        alice
            .command(Command::Connect(nick("bob")))
            .await
            .unwrap()
            .unwrap();
        wait_for(&alice, |e| {
            matches!(
                e,
                Event::ChatState {
                    state: ChatState::Connected,
                    ..
                }
            )
        })
        .await;
        for (from, to, to_nick, text) in [
            (&alice, &bob, "bob", "one"),
            (&bob, &alice, "alice", "two"),
            (&alice, &bob, "bob", "three"),
        ] {
            from.command(Command::Send(nick(to_nick), text.into()))
                .await
                .unwrap()
                .unwrap();
            let got = wait_for(to, |e| matches!(e, Event::Message { .. })).await;
            assert!(matches!(got, Event::Message { text: t, .. } if t == text));
            wait_for(from, |e| matches!(e, Event::Delivered { .. })).await;
        }

        // carol asks alice, who denies with a reason carol sees.
        carol
            .command(Command::Connect(nick("alice")))
            .await
            .unwrap()
            .unwrap();
        let request = match wait_for(&alice, |e| matches!(e, Event::ConnectionRequest { .. })).await
        {
            Event::ConnectionRequest { request, .. } => request,
            _ => unreachable!(),
        };
        alice
            .command(Command::Deny(request, "not today".into()))
            .await
            .unwrap()
            .unwrap();
        let closed = wait_for(&carol, |e| matches!(e, Event::ChatClosed { .. })).await;
        assert!(matches!(
            closed,
            Event::ChatClosed { reason: CloseReason::Denied(r), .. } if r == "not today"
        ));

        // bob closes; alice is told with bob's reason.
        bob.command(Command::Close(nick("alice"), "gotta go".into()))
            .await
            .unwrap()
            .unwrap();
        let closed = wait_for(&alice, |e| matches!(e, Event::ChatClosed { .. })).await;
        assert!(matches!(
            closed,
            Event::ChatClosed { reason: CloseReason::ByPeer(r), .. } if r == "gotta go"
        ));

        // carol quits gracefully: unregistered, and alice sees her leave.
        carol.command(Command::Shutdown).await.unwrap().unwrap();
        wait_for(&carol, |e| *e == Event::Unregistered).await;
        wait_for(&carol, |e| *e == Event::ShutdownComplete).await;
        carol.handle.join().await.unwrap();
        wait_for(&alice, |e| {
            matches!(e, Event::Presence(p2pchat_core::registry::Presence::Left(n)) if *n == nick("carol"))
        })
        .await;
        let Answer::Chats(chats) = alice.command(Command::Chats).await.unwrap().unwrap() else {
            panic!("no chats answer")
        };
        assert!(chats.is_empty(), "{chats:?}");
        net.stop.stop();
    });
}
