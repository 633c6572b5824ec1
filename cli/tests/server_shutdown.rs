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
    alice.quit();
}

/// The cause of `bench registry` losing every connection in some runs: the bench read the
/// server's first line and closed the pipe, and the server's next `println!` panicked on
/// the closed stdout, taking every client with it. Nobody reading the registry's output
/// must not stop it.
#[test]
fn a_registry_whose_stdout_is_closed_keeps_serving_and_stops_cleanly() {
    use std::io::BufRead;
    let dir = temp_dir("closed-stdout");
    let mut server = p2pchat_tests::process::registry_command(bin(), &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .unwrap()
        .unwrap();
    // The reader is gone: every later line the server prints meets a closed pipe.
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let mut alice = start_chat(bin(), &dir, "alice", port, &[]);
    alice.expect("you are alice");
    alice.quit();
    let pid = server.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the registry died: {status}");
}
