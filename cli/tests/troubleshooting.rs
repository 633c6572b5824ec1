//! Every troubleshooting case of the original's documentation, reproduced with the real
//! binary, each with its message and exit code (3 configuration, 4 network, 5 protocol).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::path::Path;

use p2pchat_tests::process::{Proc, empty_config, start_chat, start_registry, temp_dir};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    p2pchat_tests::tor_network::free_port().unwrap()
}

fn chat_with_config(dir: &std::path::Path, config: &str, extra: &[&str]) -> Proc {
    p2pchat_tests::process::chat_with_config(bin(), dir, config, extra)
}

#[test]
fn missing_configuration_values_are_each_named_with_exit_code_3() {
    let dir = temp_dir("missing");
    let config = empty_config(&dir);
    let mut p = Proc::start(
        bin(),
        "chat",
        &[
            "chat",
            "--tor",
            "direct",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(p.wait(), 3);
    let out = p.output();
    assert!(
        out.contains("missing configuration values: nick, server.address, server.port"),
        "{out}"
    );
    assert!(out.contains("--nick"), "{out}");
}

#[test]
fn an_unknown_configuration_key_is_named_with_exit_code_3() {
    let dir = temp_dir("unknown-key");
    let mut p = chat_with_config(&dir, "nick = \"a\"\n[server]\nadress = \"x\"\n", &[]);
    assert_eq!(p.wait(), 3);
    assert!(p.output().contains("adress"), "{}", p.output());
}

#[test]
fn a_registry_that_is_down_is_reported_with_exit_code_4() {
    let dir = temp_dir("registry-down");
    let port = closed_port();
    let mut p = start_chat(bin(), &dir, "alice", port, &[]);
    assert_eq!(p.wait(), 4);
    let out = p.output();
    assert!(
        out.contains(&format!("could not reach the registry at 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("refused"), "{out}");
}

#[test]
fn tor_not_running_is_reported_with_exit_code_4() {
    let dir = temp_dir("no-tor");
    let config = format!(
        "nick = \"alice\"\n[server]\naddress = \"{}\"\nport = 5050\n[tor]\nmode = \"system\"\ncontrol = \"127.0.0.1:{}\"\nsocks = \"127.0.0.1:{}\"\n",
        p2pchat_core::test_keys::onion(6).address().hostname(),
        closed_port(),
        closed_port()
    );
    let mut p = chat_with_config(&dir, &config, &[]);
    assert_eq!(p.wait(), 4);
    assert!(p.output().contains("is Tor running?"), "{}", p.output());
}

/// A HiddenServiceDir as tor leaves it: hostname and key.
fn hidden_service_dir(dir: &std::path::Path) -> std::path::PathBuf {
    let hs = dir.join("hs");
    std::fs::create_dir_all(&hs).unwrap();
    let key = p2pchat_core::test_keys::onion(5);
    std::fs::write(
        hs.join("hs_ed25519_secret_key"),
        &*key.to_tor_secret_key_file(),
    )
    .unwrap();
    std::fs::write(
        hs.join("hostname"),
        format!("{}\n", key.address().hostname()),
    )
    .unwrap();
    hs
}

#[test]
fn a_closed_socks_port_says_tor_is_not_running_with_exit_code_4() {
    let dir = temp_dir("socks-closed");
    let hs = hidden_service_dir(&dir);
    let config = format!(
        "nick = \"alice\"\n[server]\naddress = \"{}\"\nport = 5050\n[tor]\nmode = \"hidden-service-dir\"\nsocks = \"127.0.0.1:{}\"\n[hidden_service]\ndir = \"{}\"\n",
        p2pchat_core::test_keys::onion(6).address().hostname(),
        closed_port(),
        hs.display()
    );
    let mut p = chat_with_config(&dir, &config, &["--listen", "127.0.0.1:0"]);
    assert_eq!(p.wait(), 4);
    let out = p.output();
    assert!(out.contains("Tor is not running"), "{out}");
    assert!(out.contains("SOCKS port"), "{out}");
}

#[test]
fn a_wrong_hidden_service_dir_is_reported_with_exit_code_4() {
    let dir = temp_dir("hs-wrong");
    let config = format!(
        "nick = \"alice\"\n[server]\naddress = \"{}\"\nport = 5050\n[tor]\nmode = \"hidden-service-dir\"\nsocks = \"127.0.0.1:{}\"\n[hidden_service]\ndir = \"{}\"\n",
        p2pchat_core::test_keys::onion(6).address().hostname(),
        closed_port(),
        dir.join("nothing-here").display()
    );
    let mut p = chat_with_config(&dir, &config, &[]);
    assert_eq!(p.wait(), 4);
    let out = p.output();
    assert!(out.contains("hidden service directory"), "{out}");
    assert!(out.contains("hostname"), "{out}");
}

#[test]
fn a_duplicate_nick_shows_the_registrys_reason_with_exit_code_5() {
    let dir = temp_dir("dup-nick");
    let (_server, port) = start_registry(bin(), &dir);
    let mut first = start_chat(bin(), &dir, "alice", port, &[]);
    first.expect("you are alice");
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut second = start_chat(bin(), &other, "alice", port, &[]);
    assert_eq!(second.wait(), 5);
    let out = second.output();
    assert!(
        out.contains("the registry refused the registration: that nickname is taken"),
        "{out}"
    );
}

#[test]
fn direct_mode_refuses_a_registry_that_is_not_on_loopback() {
    let dir = temp_dir("not-loopback");
    let config = empty_config(&dir);
    let data = dir.join("data");
    let mut p = Proc::start(
        bin(),
        "chat",
        &[
            "chat",
            "--tor",
            "direct",
            "--nick",
            "alice",
            "--server",
            "10.1.2.3:5050",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(p.wait(), 4);
    assert!(
        p.output().contains("not a loopback address"),
        "{}",
        p.output()
    );
}
