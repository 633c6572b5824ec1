//! The real binary, driven through pipes: a `p2pchat server` and `p2pchat chat`
//! processes in direct mode exchange messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::path::Path;

use p2pchat_tests::process::{start_chat, start_registry, temp_dir};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

#[test]
fn two_chat_processes_talk_through_a_server_process() {
    let dir = temp_dir("pipes");
    let (mut server, port) = start_registry(bin(), &dir);
    let mut alice = start_chat(bin(), &dir, "alice", port, &[]);
    let mut bob = start_chat(bin(), &dir, "bob", port, &[]);
    alice.expect("you are alice");
    bob.expect("you are bob");

    alice.send("/users b");
    alice.expect("  bob  ");
    alice.send("/connect bob");
    bob.expect("alice wants to chat");
    bob.send("/accept alice");
    alice.expect("bob: connected");
    bob.expect("alice: connected");

    alice.send("hello bob, through pipes");
    bob.expect("<alice> hello bob, through pipes");
    alice.expect("#1 delivered to bob");
    bob.send("/msg alice hi alice");
    alice.expect("<bob> hi alice");
    bob.expect("#1 delivered to alice");

    alice.send("/fingerprint bob");
    alice.expect("* bob: ");
    alice.send("/chats");
    alice.expect("> bob: Connected");

    alice.send("/quit");
    bob.expect("alice closed the chat");
    assert_eq!(alice.wait(), 0, "{}", alice.output());
    bob.quit();
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_denied_chat_request_shows_the_reason_to_the_requester() {
    let dir = temp_dir("deny");
    let (_server, port) = start_registry(bin(), &dir);
    let mut alice = start_chat(bin(), &dir, "alice", port, &[]);
    let mut carol = start_chat(bin(), &dir, "carol", port, &[]);
    alice.expect("you are alice");
    carol.expect("you are carol");
    alice.send("/connect carol");
    carol.expect("alice wants to chat");
    carol.send("/deny alice busy right now");
    alice.expect("carol denied the chat (busy right now)");
    let _ = std::fs::remove_dir_all(&dir);
}
