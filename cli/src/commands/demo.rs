//! `p2pchat demo`: a registry and two peers in this process, in direct mode over real
//! loopback sockets and real WebSocket, with fresh keys: register, connect, accept, a short
//! encrypted conversation both ways with delivery acknowledgements, close, unregister.

use core::time::Duration;

use async_std::net::TcpListener;
use p2pchat_async_std::{Answer, Command, PeerHandle, ServerSettings, Subscription};
use p2pchat_core::identity::{Identity, OnionIdentity, RsaIdentity};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{AcceptPolicy, ChatState, Event, PeerConfig};
use p2pchat_core::registry::{Registry, RegistryConfig};

use crate::chat_ui::render::render;
use crate::errors::CliError;

/// How long the whole demo may take.
const DEMO_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the demo and prints its transcript.
pub fn run() -> Result<(), CliError> {
    async_std::task::block_on(async {
        match async_std::future::timeout(DEMO_TIMEOUT, demo()).await {
            Ok(result) => result,
            Err(_) => Err(CliError::Network(
                "the demo did not finish within 60 s (is loopback networking blocked?)".into(),
            )),
        }
    })
}

fn network(e: impl core::fmt::Display) -> CliError {
    CliError::Network(e.to_string())
}

fn step(text: &str) {
    println!("\n== {text}");
}

async fn demo() -> Result<(), CliError> {
    println!("p2pchat demo: a registry and two peers (alice, bob) on this machine.");
    println!("Direct mode: real sockets and WebSocket on 127.0.0.1, no Tor (NOT anonymous).");
    step("generating two RSA-2048 identities");
    let (alice_id, bob_id) = async_std::task::spawn_blocking(|| {
        let mut rng = p2pchat_async_std::rng::os_rng().map_err(network)?;
        let mut make = |nick: &str| -> Result<Identity, CliError> {
            let rsa = RsaIdentity::generate(&mut rng, 2048).map_err(network)?;
            let nick = Nick::new(nick).map_err(network)?;
            Ok(Identity::new(nick, rsa, OnionIdentity::generate(&mut rng)))
        };
        Ok::<_, CliError>((make("alice")?, make("bob")?))
    })
    .await?;
    for id in [&alice_id, &bob_id] {
        println!(
            "   {}: onion {}  key {}",
            id.nick,
            id.address().hostname(),
            id.rsa.public().fingerprint()
        );
    }

    step("starting the registry (WebSocket on 127.0.0.1)");
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(network)?;
    let registry_port = listener.local_addr().map_err(network)?.port();
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(network)?;
    let registry = Registry::new(RegistryConfig::default(), &mut rng);
    let (stop, server) =
        p2pchat_async_std::spawn_server(registry, listener, ServerSettings::default(), None);
    println!("   listening on 127.0.0.1:{registry_port}");

    step("alice and bob register (each proves its keys)");
    // The peers' stores live for the demo only.
    let scratch = std::env::temp_dir().join(format!("p2pchat-demo-{}", std::process::id()));
    crate::keystore::ensure_private_dir(&scratch).map_err(network)?;
    let _cleanup = RemoveOnDrop(scratch.clone());
    let alice = start_peer(alice_id, registry_port, &scratch).await?;
    let bob = start_peer(bob_id, registry_port, &scratch).await?;
    expect(&alice, "alice", |e| *e == Event::Registered).await?;
    expect(&bob, "bob", |e| *e == Event::Registered).await?;

    step("alice opens a chat with bob; bob is asked and accepts");
    let alice_nick = Nick::new("alice").map_err(network)?;
    let bob_nick = Nick::new("bob").map_err(network)?;
    command(&alice, Command::Connect(bob_nick.clone())).await?;
    let request = match expect(&bob, "bob", |e| {
        matches!(e, Event::ConnectionRequest { .. })
    })
    .await?
    {
        Event::ConnectionRequest { request, .. } => request,
        _ => return Err(network("unexpected event")),
    };
    command(&bob, Command::Accept(request)).await?;
    let connected = |e: &Event| {
        matches!(
            e,
            Event::ChatState {
                state: ChatState::Connected,
                ..
            }
        )
    };
    expect(&alice, "alice", connected).await?;
    expect(&bob, "bob", connected).await?;

    step("a short conversation, end-to-end encrypted, with delivery acknowledgements");
    let lines = [
        (
            &alice,
            "alice",
            &bob,
            "bob",
            "Hi Bob! Only you can read this.",
        ),
        (
            &bob,
            "bob",
            &alice,
            "alice",
            "Hi Alice. Your key checked out; so did mine.",
        ),
        (
            &alice,
            "alice",
            &bob,
            "bob",
            "Then we are talking. Bye for now!",
        ),
    ];
    for (from, from_name, to, to_name, text) in lines {
        let to_nick = Nick::new(to_name).map_err(network)?;
        let Answer::MessageId(id) =
            command(from, Command::Send(to_nick.clone(), text.into())).await?
        else {
            return Err(network("no message id"));
        };
        expect(to, to_name, |e| matches!(e, Event::Message { .. })).await?;
        expect(from, from_name, |e| {
            *e == Event::Delivered {
                nick: to_nick.clone(),
                id,
            }
        })
        .await?;
    }

    step("alice closes the chat; both quit and unregister");
    command(&alice, Command::Close(bob_nick, "bye".into())).await?;
    expect(&bob, "bob", |e| matches!(e, Event::ChatClosed { .. })).await?;
    expect(&alice, "alice", |e| matches!(e, Event::ChatClosed { .. })).await?;
    let _ = alice_nick;
    for (peer, name) in [(&alice, "alice"), (&bob, "bob")] {
        command(peer, Command::Shutdown).await?;
        expect(peer, name, |e| *e == Event::ShutdownComplete).await?;
    }
    alice.handle.join().await.map_err(network)?;
    bob.handle.join().await.map_err(network)?;
    stop.stop();
    server.await?;
    println!("\ndemo complete: every message was delivered and acknowledged.");
    println!("Next: real chat through Tor — see the README, \"Chat through Tor\".");
    Ok(())
}

/// A running demo peer and its events.
struct DemoPeer {
    handle: PeerHandle,
    updates: Subscription,
}

/// Starts a demo peer with a scratch store in `dir`.
async fn start_peer(
    identity: Identity,
    registry_port: u16,
    dir: &std::path::Path,
) -> Result<DemoPeer, CliError> {
    let store = p2pchat_async_std::local::scratch_store(dir, &identity.nick.to_string())
        .map_err(network)?;
    let config = PeerConfig {
        accept_policy: AcceptPolicy::Ask,
        ..PeerConfig::default()
    };
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(network)?;
    let (handle, updates) = p2pchat_async_std::local::start_direct_peer(
        config,
        identity,
        registry_port,
        store,
        &mut rng,
    )
    .await
    .map_err(network)?;
    Ok(DemoPeer { handle, updates })
}

async fn command(peer: &DemoPeer, c: Command) -> Result<Answer, CliError> {
    match peer.handle.command(c).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(CliError::Protocol(e.to_string())),
        Err(e) => Err(network(e)),
    }
}

/// Prints `who`'s events until one matches `want`; returns it.
async fn expect(
    peer: &DemoPeer,
    who: &str,
    want: impl Fn(&Event) -> bool,
) -> Result<Event, CliError> {
    loop {
        let Some(event) = peer.updates.next_event().await else {
            return Err(network(format!("{who} stopped unexpectedly")));
        };
        for line in render(&event) {
            println!("   [{who}] {line}");
        }
        if let Event::RegistrationFailed(e) = &event {
            return Err(CliError::Protocol(format!("{who}: {e}")));
        }
        if want(&event) {
            return Ok(event);
        }
    }
}

/// Removes a scratch directory when the demo ends, however it ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
