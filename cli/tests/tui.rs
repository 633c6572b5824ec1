//! The full-screen interface in a real terminal (tmux), against a loopback registry and a
//! second peer on the line interface.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::path::Path;

use p2pchat_tests::process::{
    PASSPHRASE_ENV, TEST_PASSPHRASE, empty_config, start_chat, start_registry, temp_dir,
};
use p2pchat_tests::tmux::Tmux;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

/// `p2pchat chat` as `nick` in a `width` × `height` tmux session, on the full-screen
/// interface; when it exits, the shell prints `EXITED <status>` and waits (a SIGINT from
/// Ctrl-C reaches the shell too: it is trapped, so the shell stays to say how p2pchat ended).
fn full_screen_chat(dir: &Path, nick: &str, port: u16, width: u16, height: u16) -> Tmux {
    let config = empty_config(dir);
    let command = format!(
        "trap : INT; {} chat --tor direct --nick {nick} --server 127.0.0.1:{port} --listen 127.0.0.1:0 --config {} --data-dir {}; echo EXITED $?; sleep 60",
        bin().display(),
        config.display(),
        dir.join(format!("{nick}-data")).display()
    );
    Tmux::start(
        &format!("p2pchat-tui-{nick}"),
        width,
        height,
        &[(PASSPHRASE_ENV, TEST_PASSPHRASE)],
        &command,
    )
}

#[test]
fn the_full_screen_interface_chats_shows_receipts_and_restores_the_terminal_on_quit() {
    let dir = temp_dir("tui");
    let (_server, port) = start_registry(bin(), &dir);
    let mut bob = start_chat(bin(), &dir, "bob", port, &["--auto-accept"]);
    bob.expect("you are bob");
    let alice = full_screen_chat(&dir, "alice", port, 100, 30);
    alice.expect("registry: online");
    alice.expect("No conversation open");
    // Start-up's warning, printed before the interface took the terminal, is not lost.
    alice.expect("NOT anonymous: never use it for real conversations");
    alice.type_line("/connect bob");
    alice.expect("connected (end-to-end encrypted)");
    bob.send("/msg alice hello from bob, 你好 👋");
    alice.expect("<bob> hello from bob, 你好 👋");
    alice.type_line("hi bob");
    bob.expect("<alice> hi bob");
    alice.expect("✓ delivered");
    // A pasted newline is text, not Enter: two pasted lines go as one message.
    alice.paste("pasted one\npasted two");
    alice.keys(&["Enter"]);
    bob.expect("<alice> pasted one pasted two");
    // Help, then back.
    alice.keys(&["?"]);
    alice.expect("any key closes");
    alice.keys(&["Escape"]);
    alice.wait_for("the help closed", |s| !s.contains("any key closes"));
    alice.type_line("/quit");
    // The alternate screen is gone: the shell's own screen shows the exit status, and
    // nothing of the interface.
    let screen = alice.expect("EXITED 0");
    assert!(!screen.contains("registry: online"), "{screen}");
    bob.quit();
}

#[test]
fn ctrl_c_in_the_full_screen_interface_quits_gracefully_and_restores_the_terminal() {
    let dir = temp_dir("tui-ctrl-c");
    let (_server, port) = start_registry(bin(), &dir);
    let carol = full_screen_chat(&dir, "carol", port, 80, 24);
    carol.expect("registry: online");
    carol.keys(&["C-c"]);
    // Exit status 0 is the graceful way (chats closed, unregistered); a signal's default
    // would be 130. The alternate screen is gone.
    let screen = carol.expect("EXITED 0");
    assert!(!screen.contains("registry: online"), "{screen}");
}

#[test]
fn start_up_progress_shows_in_the_status_bar_and_ctrl_c_there_stops_at_once() {
    let dir = temp_dir("tui-starting");
    // A "registry" that accepts the connection and never answers: start-up waits at the
    // registration.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dave = full_screen_chat(&dir, "dave", port, 80, 24);
    dave.expect(&format!("registering with 127.0.0.1:{port}"));
    dave.keys(&["C-c"]);
    // Nothing to shut down yet: it stops at once (130, as for SIGINT), with the terminal
    // restored so the reason is readable.
    let screen = dave.expect("EXITED 130");
    assert!(screen.contains("stopped while starting"), "{screen}");
    assert!(!screen.contains("Ctrl-C stops"), "{screen}");
}

/// Kills (SIGKILL) the `p2pchat chat` process of `nick` whose data is in `dir`.
fn kill_chat_of(dir: &Path, nick: &str) {
    let data = dir.join(format!("{nick}-data"));
    let needle = format!("--data-dir\0{}", data.display());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with(bin().to_str().unwrap()) && cmdline.contains(&needle) {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
    }
}

#[test]
fn a_message_stored_but_never_shown_is_shown_as_new_after_a_restart() {
    let dir = temp_dir("tui-unread");
    let (_server, port) = start_registry(bin(), &dir);
    let mut carol = start_chat(bin(), &dir, "carol", port, &["--auto-accept"]);
    carol.expect("you are carol");
    let mut alice = start_chat(bin(), &dir, "alice", port, &[]);
    alice.expect("you are alice");
    let bob = full_screen_chat(&dir, "bob", port, 100, 30);
    bob.expect("No conversation open");
    // Carol's conversation is on bob's screen when alice writes.
    bob.type_line("/connect carol");
    bob.expect("connected (end-to-end encrypted)");
    alice.send("/connect bob");
    bob.expect("alice wants to chat");
    bob.type_line("/accept alice");
    alice.expect("bob: connected");
    bob.type_line("/switch carol");
    alice.send("are you there?");
    alice.expect("#1 delivered to bob");
    bob.expect("alice (1)");
    // Stored and acknowledged, not shown: then bob's process dies.
    kill_chat_of(&dir, "bob");
    bob.expect("EXITED");
    let mut again = start_chat(bin(), &dir, "bob", port, &[]);
    again.expect("1 new message from alice you have not seen");
    again.expect("<alice> are you there?");
    again.quit();
    // Shown now: not new again.
    let mut third = start_chat(bin(), &dir, "bob", port, &[]);
    third.expect("you are bob");
    third.send("/fingerprint");
    third.expect("* you (bob)");
    third.quit();
    assert!(
        !third.output().contains("you have not seen"),
        "{}",
        third.output()
    );
    alice.quit();
    carol.quit();
}
