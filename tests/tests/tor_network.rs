//! End to end through real onion services on a private Tor network on 127.0.0.1 (three
//! authorities, three relays, client tors; Debian's `tor`): the registry as an onion
//! service, `p2pchat chat` processes in `system` mode and one in `launch` mode, the
//! troubleshooting cases for real, and anonymity hygiene (no socket outside 127.0.0.0/8,
//! no DNS, no message text in the logs). One test: the network is the expensive part.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use p2pchat_tests::process::{Proc, p2pchat_binary};
use p2pchat_tests::tor_network::{PrivateNetwork, TorNode, free_port};

/// Long enough for anything on the private network (which is fast: seconds).
const TOR_WAIT: Duration = Duration::from_secs(120);

fn config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

/// A configuration for `system` mode against `client`'s tor.
fn system_config(client: &TorNode, nick: &str, server: &str, port: u16) -> String {
    format!(
        "nick = \"{nick}\"\n[server]\naddress = \"{server}\"\nport = {port}\n[host]\nport = {}\n\
         [tor]\nmode = \"system\"\ncontrol = \"{}\"\nsocks = \"{}\"\n",
        free_port().unwrap(),
        client.control,
        client.socks.unwrap()
    )
}

fn chat_args<'a>(config: &'a Path, data: &'a Path) -> Vec<&'a str> {
    vec![
        "chat",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]
}

/// Runs `p2pchat ARGS` under strace, recording every connect/sendto of it and its threads
/// (one file per thread or child process, `trace.<pid>`).
fn traced(name: &str, trace_dir: &Path, args: &[&str]) -> Proc {
    std::fs::create_dir_all(trace_dir).unwrap();
    let mut cmd = Command::new("strace");
    cmd.args([
        "-ff",
        "-qq",
        "-e",
        "trace=connect,sendto,sendmsg,execve",
        "-o",
    ])
    .arg(trace_dir.join("trace"))
    .arg(p2pchat_binary())
    .args(args);
    Proc::start_command(&mut cmd, name)
}

/// Every address our process connected to must be loopback; nothing may go to port 53.
/// Files of a child that executed `tor` (launch mode) are tor's own business.
fn assert_loopback_only(trace_dir: &Path) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(trace_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let runs_tor = text
            .lines()
            .filter(|l| l.starts_with("execve("))
            .any(|l| l.contains("/tor\"") || l.starts_with("execve(\"tor\""));
        if runs_tor {
            continue;
        }
        for line in text.lines() {
            if !(line.starts_with("connect(")
                || line.starts_with("sendto(")
                || line.starts_with("sendmsg("))
            {
                continue;
            }
            if !line.contains("sa_family=") {
                continue;
            }
            checked += 1;
            let ok = line.contains("sin_addr=inet_addr(\"127.")
                || line.contains("inet_pton(AF_INET6, \"::1\"");
            assert!(
                ok,
                "a socket outside 127.0.0.0/8 (or a local name service): {line}"
            );
            assert!(!line.contains("htons(53)"), "a DNS lookup: {line}");
        }
    }
    checked
}

#[test]
fn chat_through_onion_services_on_a_private_tor_network() {
    async_std::task::block_on(scenario());
}

async fn scenario() {
    let dir = std::env::temp_dir().join(format!("p2pchat-tornet-{}", std::process::id()));
    let net = PrivateNetwork::start(&dir.join("net"), 3, 4)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = net.started.elapsed();
    eprintln!("[bench] private network bootstrapped in {bootstrap:?}");
    let binary = p2pchat_binary();
    let bin = binary.as_path();

    // The registry, published through client tor 0.
    let registry_port = free_port().unwrap();
    let server_cfg = config(
        &dir,
        "server",
        &format!(
            "[tor]\nmode = \"system\"\ncontrol = \"{}\"\nsocks = \"{}\"\n",
            net.clients[0].control,
            net.clients[0].socks.unwrap()
        ),
    );
    let server_data = dir.join("server-data");
    let listen = format!("127.0.0.1:{registry_port}");
    let mut server = Proc::start(
        bin,
        "server",
        &[
            "server",
            "--listen",
            &listen,
            "--config",
            server_cfg.to_str().unwrap(),
            "--data-dir",
            server_data.to_str().unwrap(),
        ],
    );
    let line = server.expect_within("onion address:", TOR_WAIT);
    let onion = line.split_whitespace().nth(2).unwrap().to_owned();
    assert!(onion.ends_with(".onion"), "{line}");
    let reachable = net
        .wait_reachable(&net.clients[1], &onion, registry_port)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[bench] registry onion reachable {reachable:?} after ADD_ONION");

    // alice (traced) and bob, system mode, through client tors 1 and 2.
    let alice_cfg = config(
        &dir,
        "alice",
        &system_config(&net.clients[1], "alice", &onion, registry_port),
    );
    let bob_cfg = config(
        &dir,
        "bob",
        &system_config(&net.clients[2], "bob", &onion, registry_port),
    );
    let (alice_data, bob_data) = (dir.join("alice-data"), dir.join("bob-data"));
    let alice_trace = dir.join("alice-trace");
    let alice_started = Instant::now();
    let mut alice = traced("alice", &alice_trace, &chat_args(&alice_cfg, &alice_data));
    let mut bob = Proc::start(bin, "bob", &chat_args(&bob_cfg, &bob_data));
    alice.expect_within("you are alice", TOR_WAIT);
    eprintln!(
        "[bench] alice registered {:?} after start",
        alice_started.elapsed()
    );
    bob.expect_within("you are bob", TOR_WAIT);

    alice.send("/users b");
    alice.expect("  bob  ");
    let dialed = Instant::now();
    alice.send("/connect bob");
    bob.expect_within("alice wants to chat", TOR_WAIT);
    alice.expect("waiting for bob to accept");
    eprintln!("[bench] onion dial + handshake: {:?}", dialed.elapsed());
    bob.send("/accept alice");
    alice.expect_within("bob: connected", TOR_WAIT);
    bob.expect_within("alice: connected", TOR_WAIT);
    let secret = "the owl flies at midnight";
    let sent = Instant::now();
    alice.send(secret);
    bob.expect_within(&format!("<alice> {secret}"), TOR_WAIT);
    alice.expect_within("#1 delivered to bob", TOR_WAIT);
    eprintln!(
        "[bench] first message delivered (acknowledged) in {:?}; {:?} after alice started",
        sent.elapsed(),
        alice_started.elapsed()
    );
    bob.send("/msg alice and the fox at dawn");
    alice.expect_within("<bob> and the fox at dawn", TOR_WAIT);
    bob.expect_within("#1 delivered to alice", TOR_WAIT);

    // dave launches his own tor, configured for this network.
    let extra: Vec<String> = net.common.iter().map(|l| format!("\"{l}\"")).collect();
    let dave_cfg = config(
        &dir,
        "dave",
        &format!(
            "nick = \"dave\"\n[server]\naddress = \"{onion}\"\nport = {registry_port}\n[host]\nport = {}\n\
             [tor]\nmode = \"launch\"\nextra_torrc = [{}]\n",
            free_port().unwrap(),
            extra.join(", ")
        ),
    );
    let dave_data = dir.join("dave-data");
    let dave_trace = dir.join("dave-trace");
    let dave_started = Instant::now();
    let mut dave = traced("dave", &dave_trace, &chat_args(&dave_cfg, &dave_data));
    dave.expect_within("you are dave", TOR_WAIT);
    eprintln!(
        "[bench] launch mode: own tor bootstrapped and registered {:?} after start",
        dave_started.elapsed()
    );
    alice.expect_within("dave is online", TOR_WAIT);
    dave.send("/connect alice");
    alice.expect_within("dave wants to chat", TOR_WAIT);
    alice.send("/deny dave not now, dave");
    dave.expect_within("alice denied the chat (not now, dave)", TOR_WAIT);

    eprintln!("[time] scenario at {:?}", net.started.elapsed());
    // bob closes; alice is told. Then everyone quits gracefully.
    bob.send("/close alice");
    alice.expect_within("bob closed the chat", TOR_WAIT);
    for p in [&mut alice, &mut bob, &mut dave] {
        p.send("/quit");
        assert_eq!(p.wait_within(TOR_WAIT), 0, "{}: {}", p.name, p.output());
    }

    eprintln!("[time] quit done at {:?}", net.started.elapsed());
    // Hygiene: loopback only, no DNS, and no message text in the logs (stderr).
    let checked = assert_loopback_only(&alice_trace) + assert_loopback_only(&dave_trace);
    assert!(checked > 0, "strace recorded no connection at all");
    eprintln!("[hygiene] {checked} socket calls of alice and dave checked: loopback only");
    for p in [&alice, &bob, &dave] {
        for line in p.seen.iter().filter(|l| l.starts_with("stderr:")) {
            assert!(
                !line.contains("owl") && !line.contains("fox") && !line.contains("not now"),
                "{}'s log holds message text: {line}",
                p.name
            );
        }
    }

    // Troubleshooting, for real. A wrong registry address: Tor answers general failure.
    let wrong = p2pchat_core::test_keys::onion(9).address().hostname();
    let wrong_cfg = config(
        &dir,
        "wrong",
        &system_config(&net.clients[1], "erin", &wrong, 5050),
    );
    let mut erin = Proc::start(bin, "erin", &chat_args(&wrong_cfg, &dir.join("erin-data")));
    assert_eq!(erin.wait_within(TOR_WAIT), 4, "{}", erin.output());
    assert!(
        erin.output().contains("could not reach the registry")
            && erin.output().contains("Tor could not reach"),
        "{}",
        erin.output()
    );
    eprintln!("[time] wrong address done at {:?}", net.started.elapsed());
    // Tor not running: nothing on the configured ports.
    let none_cfg = config(
        &dir,
        "none",
        &format!(
            "nick = \"frank\"\n[server]\naddress = \"{onion}\"\nport = {registry_port}\n[tor]\nmode = \"system\"\ncontrol = \"127.0.0.1:{}\"\nsocks = \"127.0.0.1:{}\"\n",
            free_port().unwrap(),
            free_port().unwrap()
        ),
    );
    let mut frank = Proc::start(bin, "frank", &chat_args(&none_cfg, &dir.join("frank-data")));
    assert_eq!(frank.wait_within(TOR_WAIT), 4, "{}", frank.output());
    assert!(
        frank.output().contains("is Tor running?"),
        "{}",
        frank.output()
    );
    // The registry down: its process is not running while its onion service is published
    // (as with a HiddenServiceDir in torrc): Tor reaches the service, nothing answers.
    let down_key = p2pchat_core::test_keys::onion(11);
    let down_onion = down_key.address().hostname();
    let mut control = p2pchat_async_std::tor::ControlConnection::connect(net.clients[0].control)
        .await
        .unwrap();
    control
        .authenticate(&p2pchat_async_std::tor::ControlTrust::system(None))
        .await
        .unwrap();
    control.set_events("HS_DESC").await.unwrap();
    let nothing = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    control.add_onion(&down_key, 5050, nothing).await.unwrap();
    let service_id = down_key.address().service_id();
    loop {
        let event = async_std::future::timeout(TOR_WAIT, control.next_event())
            .await
            .expect("no HS_DESC UPLOADED event")
            .unwrap();
        if event.starts_with(&format!("HS_DESC UPLOADED {service_id}")) {
            break;
        }
    }
    eprintln!(
        "[time] dead registry published at {:?}",
        net.started.elapsed()
    );
    let down_cfg = config(
        &dir,
        "down",
        &system_config(&net.clients[3], "gina", &down_onion, 5050),
    );
    let mut gina = Proc::start(bin, "gina", &chat_args(&down_cfg, &dir.join("gina-data")));
    assert_eq!(gina.wait_within(TOR_WAIT), 4, "{}", gina.output());
    assert!(
        gina.output().contains("could not reach the registry")
            && gina.output().contains("Tor could not reach"),
        "{}",
        gina.output()
    );
    server.terminate();
    assert_eq!(server.wait_within(TOR_WAIT), 0, "{}", server.output());
    eprintln!("[bench] whole scenario: {:?}", net.started.elapsed());
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
}
