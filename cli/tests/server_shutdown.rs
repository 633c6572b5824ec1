//! SIGTERM stops the registry cleanly: its clients are told, and reconnect later.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

mod support;

use support::{start_chat, start_registry, temp_dir};

#[test]
fn sigterm_stops_the_server_and_its_clients_are_told() {
    let dir = temp_dir("sigterm");
    let (mut server, port) = start_registry(&dir);
    let mut alice = start_chat(&dir, "alice", port, &[]);
    alice.expect("you are alice");
    server.terminate();
    server.expect("p2pchat registry stopped");
    assert_eq!(server.wait(), 0, "{}", server.output());
    alice.expect("lost the registry: the registry is shutting down; reconnecting");
    alice.send("/quit");
    assert_eq!(alice.wait(), 0, "{}", alice.output());
}
