//! A chat process killed mid-chat: its peer sees why and retries; the registry drops it;
//! when it comes back with the same data directory, the message queued meanwhile is
//! delivered exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::path::Path;

use p2pchat_tests::process::{start_chat, start_registry, temp_dir};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

#[test]
fn a_killed_peer_comes_back_and_gets_the_queued_message_exactly_once() {
    let dir = temp_dir("restart");
    let (_server, port) = start_registry(bin(), &dir);
    let mut alice = start_chat(bin(), &dir, "alice", port, &[]);
    // Bob keeps his port across the restart, as an onion service keeps its virtual port.
    let bob_port = p2pchat_tests::tor_network::free_port().unwrap();
    let bob_listen = format!("127.0.0.1:{bob_port}");
    let bob_args = ["--auto-accept", "--listen", bob_listen.as_str()];
    let mut bob = start_chat(bin(), &dir, "bob", port, &bob_args);
    alice.expect("you are alice");
    bob.expect("you are bob");
    alice.send("/connect bob");
    alice.expect("bob: connected");
    alice.send("before the crash");
    alice.expect("#1 delivered to bob");

    bob.kill();
    alice.expect("bob: connection lost");
    alice.expect("bob: reconnecting (attempt");
    // The registry dropped bob at once (its connection closed), not after 90 s.
    alice.expect("bob went offline");
    alice.send("are you there?");
    alice.expect("#2 to bob queued");

    let mut bob = start_chat(bin(), &dir, "bob", port, &bob_args);
    bob.expect("you are bob");
    alice.send("/retry bob");
    bob.expect("<alice> are you there?");
    alice.expect("#2 delivered to bob");
    alice.send("/quit");
    bob.expect("alice closed the chat");
    assert_eq!(alice.wait(), 0);
    bob.quit();
    let shown = bob
        .seen
        .iter()
        .filter(|l| l.contains("<alice> are you there?"))
        .count();
    assert_eq!(shown, 1, "{}", bob.output());
    assert!(
        !bob.output().contains("before the crash"),
        "{}",
        bob.output()
    );
}
