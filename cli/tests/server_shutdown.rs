//! SIGTERM stops the registry cleanly: its clients are told, and reconnect later.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::path::Path;

use p2pchat_tests::process::{start_chat, start_registry, temp_dir};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

#[test]
fn sigterm_stops_the_server_and_its_clients_are_told() {
    let dir = temp_dir("sigterm");
    let (mut server, port) = start_registry(bin(), &dir);
    let mut alice = start_chat(bin(), &dir, "alice", port, &[]);
    alice.expect("you are alice");
    server.terminate();
    server.expect("p2pchat registry stopped");
    assert_eq!(server.wait(), 0, "{}", server.output());
    alice.expect("lost the registry: the registry is shutting down; reconnecting");
    alice.send("/quit");
    assert_eq!(alice.wait(), 0, "{}", alice.output());
}
