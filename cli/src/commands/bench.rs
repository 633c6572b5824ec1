//! `p2pchat bench`: load generators for the registry server and for a loopback chat, with
//! real sockets and real WebSocket. Results: docs/BENCHMARKS.md.

use core::time::Duration;
use std::path::PathBuf;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use p2pchat_async_std::{Answer, Command, PeerHandle, ServerSettings, Subscription};
use p2pchat_core::frame::{FrameDecoder, decode_body, encode_frame};
use p2pchat_core::identity::{Identity, OnionIdentity};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{AcceptPolicy, ChatState, Event, PeerConfig};
use p2pchat_core::registry::{
    ClientMessage, Registration, Registry, RegistryConfig, ServerMessage,
};

use crate::errors::CliError;

/// Options of `p2pchat bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Load a registry server: connections, registrations, list and lookup latency, memory.
    Registry {
        /// Clients to connect and register.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// List and lookup requests timed.
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// The encrypted store: durable messages per second (sent and acknowledged, with
    /// fsync), start-up time and memory with a large history, bytes on disk per message.
    Store {
        /// Messages of history to write.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Text size of each message, in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per transaction in the group-commit run.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Opens an existing store and reads its newest history page, in a fresh process
    /// (how `bench store` measures start-up time and memory).
    #[command(hide = true)]
    StoreOpen {
        /// The data directory holding the store.
        dir: PathBuf,
    },
    /// Two peers in direct mode over loopback: throughput and latency with acknowledgements.
    Chat {
        /// Messages for the throughput run.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
}

/// Runs a benchmark.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    async_std::task::block_on(async {
        match args.what {
            BenchCommand::Registry { clients, requests } => registry(clients, requests).await,
            BenchCommand::Chat { messages, size } => chat(messages, size).await,
            BenchCommand::Store {
                messages,
                size,
                batch,
            } => store(messages, size, batch),
            BenchCommand::StoreOpen { dir } => store_open(&dir),
        }
    })
}

fn net(e: impl core::fmt::Display) -> CliError {
    CliError::Network(e.to_string())
}

/// A field of `/proc/<pid>/status` in KiB (Linux).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) of a process, from `/proc/<pid>/stat` (Linux).
fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common configuration.
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Ws = WebSocketStream<TcpStream>;

async fn recv(ws: &mut Ws) -> Result<ServerMessage, CliError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                let mut d = FrameDecoder::new();
                let body = d
                    .decode(&mut &b[..])
                    .map_err(net)?
                    .ok_or_else(|| net("partial frame"))?;
                return decode_body(&body).map_err(net);
            }
            Some(Ok(_)) => continue,
            other => return Err(net(format!("connection ended: {other:?}"))),
        }
    }
}

async fn send(ws: &mut Ws, m: &ClientMessage) -> Result<(), CliError> {
    ws.send(Message::binary(encode_frame(m).map_err(net)?))
        .await
        .map_err(net)
}

/// A server process to load, so its memory and CPU are its own.
struct ServerProcess {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server(capacity: usize) -> Result<ServerProcess, CliError> {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("p2pchat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(net)?;
    let config = dir.join("config.toml");
    std::fs::write(&config, "").map_err(net)?;
    let exe = std::env::current_exe().map_err(net)?;
    let capacity = capacity.to_string();
    let mut child = std::process::Command::new(exe)
        .args(["server", "--tor", "direct", "--listen", "127.0.0.1:0"])
        .args(["--max-users", &capacity, "--max-connections", &capacity])
        // The bench measures what the registry can do, not its admission rate.
        .args(["--registrations-per-second", &capacity])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(net)?;
    let stdout = child.stdout.take().ok_or_else(|| net("no stdout"))?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines
        .next()
        .ok_or_else(|| net("the server printed nothing"))?
        .map_err(net)?;
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| net(format!("unexpected server output: {line}")))?;
    // Keep reading what the server prints, so its output never hits a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(ServerProcess { child, port, dir })
}

async fn registry(clients: usize, requests: usize) -> Result<(), CliError> {
    let server = start_server(clients + 16)?;
    let pid = server.child.id();
    let idle_rss = status_kib(pid, "VmRSS:").unwrap_or(0);
    println!("registry bench: {clients} clients, server pid {pid}, RSS at start {idle_rss} KiB");

    // Phase 1: connect everyone; each gets its challenge.
    let started = Instant::now();
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        let at = |step: &str, e: &dyn core::fmt::Display| {
            net(format!("client {i} of {clients}, {step}: {e}"))
        };
        let stream = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .map_err(|e| at("connecting", &e))?;
        let (mut ws, _) =
            async_tungstenite::client_async(format!("ws://127.0.0.1:{}/", server.port), stream)
                .await
                .map_err(|e| at("WebSocket handshake", &e))?;
        let ServerMessage::Challenge { nonce } =
            recv(&mut ws).await.map_err(|e| at("challenge", &e))?
        else {
            return Err(net("no challenge"));
        };
        conns.push((ws, nonce));
    }
    let connect_time = started.elapsed();
    async_std::task::sleep(Duration::from_millis(500)).await;
    let connected_rss = status_kib(pid, "VmRSS:").unwrap_or(0);
    let per_conn = (connected_rss.saturating_sub(idle_rss)) as f64 * 1024.0 / clients as f64;
    println!(
        "  {clients} idle WebSocket connections held (connected in {:.2} s); server RSS {connected_rss} KiB: {:.1} KiB per idle connection",
        connect_time.as_secs_f64(),
        per_conn / 1024.0
    );

    // Phase 2: registrations. Signatures are made first (client work), then sent.
    let keys: Vec<_> = (0..p2pchat_sim::POOL_SIZE.min(clients))
        .map(p2pchat_sim::pool_key)
        .collect::<Result<_, _>>()
        .map_err(net)?;
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(net)?;
    let mut registrations = Vec::with_capacity(clients);
    let signing = Instant::now();
    let mut last_ping = Instant::now();
    for i in 0..conns.len() {
        // Signing takes a while (tens of seconds for 19,000 clients): keep every connection
        // inside the registry's heartbeat timeout (90 s) meanwhile.
        if last_ping.elapsed() > Duration::from_secs(30) {
            for (ws, _) in conns.iter_mut() {
                send(ws, &ClientMessage::Ping).await?;
            }
            for (ws, _) in conns.iter_mut() {
                if recv(ws).await? != ServerMessage::Pong {
                    return Err(net("a keep-alive was not answered"));
                }
            }
            last_ping = Instant::now();
        }
        let nonce = &conns[i].1;
        let nick = Nick::new(&format!("user{i:05}")).map_err(net)?;
        let id = Identity::new(
            nick,
            keys[i % keys.len()].clone(),
            OnionIdentity::generate(&mut rng),
        );
        let registration = Registration::signed(&id, None, nonce, 5051, &mut rng).map_err(net)?;
        registrations.push(ClientMessage::Register(registration));
    }
    let signing = signing.elapsed();
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    for ((ws, _), registration) in conns.iter_mut().zip(&registrations) {
        send(ws, registration).await?;
    }
    let mut registered = 0;
    for (ws, _) in conns.iter_mut() {
        if recv(ws).await? == ServerMessage::Registered {
            registered += 1;
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_before
        .zip(cpu_time(pid))
        .map(|(a, b)| b.saturating_sub(a));
    println!(
        "  {registered} registrations in {:.2} s wall: {:.0}/s end to end (clients signed beforehand, {:.1} s)",
        wall.as_secs_f64(),
        registered as f64 / wall.as_secs_f64(),
        signing.as_secs_f64()
    );
    if let Some(cpu) = cpu {
        println!(
            "  server CPU for them: {:.2} s, {:.0} µs per registration (capacity {:.0}/s per core)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / registered.max(1) as f64,
            registered as f64 / cpu.as_secs_f64().max(1e-9)
        );
    }
    let registered_rss = status_kib(pid, "VmRSS:").unwrap_or(0);
    println!("  server RSS with {registered} users: {registered_rss} KiB");

    // Phase 3: lookup and full-page list latency, one request at a time. Each pair goes out
    // on the next client's connection: a lookup and a page cost 6 tokens of a client's
    // budget (50 burst, 20/s), so no client has to wait for its bucket to refill.
    let mut lookups = Vec::with_capacity(requests);
    let mut lists = Vec::with_capacity(requests);
    for i in 0..requests {
        let (ws, _) = &mut conns[i % clients];
        let nick = format!("user{:05}", (i * 7919) % clients);
        let t = Instant::now();
        send(
            ws,
            &ClientMessage::Lookup {
                request: i as u32,
                nick,
            },
        )
        .await?;
        let ServerMessage::LookupResult {
            record: Some(_), ..
        } = recv(ws).await?
        else {
            return Err(net("lookup failed"));
        };
        lookups.push(t.elapsed());
        let t = Instant::now();
        send(
            ws,
            &ClientMessage::List {
                request: i as u32,
                prefix: String::new(),
                after: Some(format!("user{:05}", (i * 104_729) % clients)),
                limit: 100,
            },
        )
        .await?;
        let ServerMessage::Page { .. } = recv(ws).await? else {
            return Err(net("list failed"));
        };
        lists.push(t.elapsed());
        // With fewer clients than requests, connections are reused: pace them.
        if clients < requests && i % clients == clients - 1 {
            async_std::task::sleep(Duration::from_millis(300)).await;
        }
    }
    lookups.sort();
    lists.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  lookup of one nick at {registered} users: p50 {:.3} ms, p99 {:.3} ms (loopback round trip included)",
        ms(percentile(&lookups, 0.5)),
        ms(percentile(&lookups, 0.99))
    );
    println!(
        "  page of 100 users with keys at {registered} users: p50 {:.3} ms, p99 {:.3} ms",
        ms(percentile(&lists, 0.5)),
        ms(percentile(&lists, 0.99))
    );
    let peak = status_kib(pid, "VmHWM:").unwrap_or(0);
    println!("  server peak RSS {peak} KiB");
    Ok(())
}

async fn start_peer(
    identity: Identity,
    registry_port: u16,
    policy: AcceptPolicy,
    dir: &std::path::Path,
) -> Result<(PeerHandle, Subscription), CliError> {
    let store =
        p2pchat_async_std::local::scratch_store(dir, &identity.nick.to_string()).map_err(net)?;
    let config = PeerConfig {
        accept_policy: policy,
        ..PeerConfig::default()
    };
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(net)?;
    let (peer, updates) = p2pchat_async_std::local::start_direct_peer(
        config,
        identity,
        registry_port,
        store,
        &mut rng,
    )
    .await
    .map_err(net)?;
    wait(&updates, |e| *e == Event::Registered).await?;
    Ok((peer, updates))
}

async fn wait(updates: &Subscription, want: impl Fn(&Event) -> bool) -> Result<Event, CliError> {
    loop {
        match updates.next_event().await {
            Some(e) if want(&e) => return Ok(e),
            Some(_) => {}
            None => return Err(net("a peer stopped")),
        }
    }
}

async fn chat(messages: usize, size: usize) -> Result<(), CliError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(net)?;
    let port = listener.local_addr().map_err(net)?.port();
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(net)?;
    let (_stop, _server) = p2pchat_async_std::spawn_server(
        Registry::new(RegistryConfig::default(), &mut rng),
        listener,
        ServerSettings::default(),
        None,
    );
    let identity = |i: usize, nick: &str| -> Result<Identity, CliError> {
        Ok(Identity::new(
            Nick::new(nick).map_err(net)?,
            p2pchat_sim::pool_key(i).map_err(net)?,
            OnionIdentity::generate(&mut p2pchat_async_std::rng::os_rng().map_err(net)?),
        ))
    };
    // Real stores, as a user's: every message is stored before it is sent, and stored
    // by the receiver before it is acknowledged.
    let scratch = std::env::temp_dir().join(format!("p2pchat-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    crate::keystore::ensure_private_dir(&scratch).map_err(net)?;
    let (alice, alice_updates) =
        start_peer(identity(0, "alice")?, port, AcceptPolicy::Ask, &scratch).await?;
    // Bob's events are not read: a subscriber that falls behind never holds his loop up,
    // but his loop runs only while someone subscribes.
    let (_bob, _bob_updates) =
        start_peer(identity(1, "bob")?, port, AcceptPolicy::AcceptAll, &scratch).await?;
    let bob_nick = Nick::new("bob").map_err(net)?;
    let _ = alice.command(Command::Connect(bob_nick.clone())).await;
    wait(&alice_updates, |e| {
        matches!(
            e,
            Event::ChatState {
                state: ChatState::Connected,
                ..
            }
        )
    })
    .await?;
    let text = "x".repeat(size);

    // Latency: one message at a time, from send to delivery acknowledgement.
    let mut latencies = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let Ok(Ok(Answer::MessageId(id))) = alice
            .command(Command::Send(bob_nick.clone(), text.clone()))
            .await
        else {
            return Err(net("send refused"));
        };
        wait(
            &alice_updates,
            |e| matches!(e, Event::Delivered { id: d, .. } if *d == id),
        )
        .await?;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "chat bench, direct mode over loopback, {size}-byte messages:\n  one at a time: send → delivered p50 {:.3} ms, p99 {:.3} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );

    // Throughput: keep up to 500 unacknowledged (the core allows 1,000 per contact).
    let window = 500;
    let started = Instant::now();
    let mut sent_at = std::collections::BTreeMap::new();
    let mut under_load = Vec::with_capacity(messages);
    let mut sent = 0;
    while under_load.len() < messages {
        // Up to 64 sends in flight at once, as a busy user interface or a bot would issue
        // them: the peer loop stores them in one transaction.
        while sent < messages && sent_at.len() + 64 <= window {
            let n = 64.min(messages - sent);
            let sends =
                (0..n).map(|_| alice.command(Command::Send(bob_nick.clone(), text.clone())));
            for answer in futures_util::future::join_all(sends).await {
                let Ok(Ok(Answer::MessageId(id))) = answer else {
                    return Err(net("send refused"));
                };
                sent_at.insert(id, Instant::now());
                sent += 1;
            }
        }
        if let Event::Delivered { id, .. } =
            wait(&alice_updates, |e| matches!(e, Event::Delivered { .. })).await?
            && let Some(t) = sent_at.remove(&id)
        {
            under_load.push(t.elapsed());
        }
    }
    let wall = started.elapsed();
    under_load.sort();
    println!(
        "  throughput: {messages} messages delivered and acknowledged in {:.2} s: {:.0} messages/s (window {window}); latency under that load p50 {:.2} ms, p99 {:.2} ms",
        wall.as_secs_f64(),
        messages as f64 / wall.as_secs_f64(),
        ms(percentile(&under_load, 0.5)),
        ms(percentile(&under_load, 0.99))
    );
    Ok(())
}

/// The passphrase of benchmark stores.
const BENCH_PASSPHRASE: &[u8] = b"benchmark passphrase";

fn store(messages: usize, size: usize, batch: usize) -> Result<(), CliError> {
    use p2pchat_async_std::store::{OpenOptions, PeerStore, STORE_FILE, SqliteStore};
    use p2pchat_core::peer::{ContactRecord, Outcome, QueuedMessage, StoreOp, WallTime};

    let dir = std::env::temp_dir().join(format!("p2pchat-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::keystore::ensure_private_dir(&dir).map_err(net)?;
    let path = dir.join(STORE_FILE);
    let options = OpenOptions { history: true };
    let mut db = SqliteStore::create(&path, Some(BENCH_PASSPHRASE), options).map_err(net)?;
    let bob = Nick::new("bob").map_err(net)?;
    db.apply(&[StoreOp::Contact(ContactRecord::new(bob.clone(), 1))])
        .map_err(net)?;
    let text = "x".repeat(size);
    let mut next_id = 1u64;
    let mut received_id = 1u64;
    // One message sent and acknowledged = stored in the outbox (and history) before it is
    // sent, resolved when acknowledged; one received = stored before it is acknowledged.
    let mut sent_and_acked = |n: usize| -> Vec<StoreOp> {
        let mut ops = Vec::with_capacity(2 * n);
        for _ in 0..n {
            ops.push(StoreOp::Queued(QueuedMessage {
                to: bob.clone(),
                id: next_id,
                nonce: next_id,
                text: text.clone(),
                queued_at: WallTime(next_id),
            }));
            ops.push(StoreOp::Resolved {
                to: bob.clone(),
                id: next_id,
                outcome: Outcome::Delivered,
            });
            next_id += 1;
        }
        ops
    };
    let mut received = |n: usize| -> Vec<StoreOp> {
        let ops = (0..n)
            .map(|i| StoreOp::Received {
                from: bob.clone(),
                peer_instance: 7,
                id: received_id + i as u64,
                nonce: received_id + i as u64,
                text: text.clone(),
                at: WallTime(received_id),
            })
            .collect();
        received_id += n as u64;
        ops
    };
    println!("store bench: encrypted SQLite store, synchronous=FULL, {size}-byte messages");
    // Worst case: every store operation its own transaction (two fsynced commits per
    // message sent and acknowledged).
    let single = 2_000.min(messages);
    let started = Instant::now();
    for op in sent_and_acked(single) {
        db.apply(std::slice::from_ref(&op)).map_err(net)?;
    }
    let wall = started.elapsed();
    println!(
        "  sent and acknowledged, one commit per operation: {single} messages in {:.2} s: {:.0} messages/s",
        wall.as_secs_f64(),
        single as f64 / wall.as_secs_f64()
    );
    // What the peer loop does under load: the operations of one drain in one commit.
    let grouped = messages / 2;
    let wall = in_commits_of(&mut db, grouped, batch, &mut sent_and_acked)?;
    println!(
        "  sent and acknowledged, {batch} messages per commit: {grouped} messages in {:.2} s: {:.0} messages/s",
        wall.as_secs_f64(),
        grouped as f64 / wall.as_secs_f64()
    );
    let incoming = messages - grouped - single;
    let wall = in_commits_of(&mut db, incoming, batch, &mut received)?;
    println!(
        "  received and stored, {batch} per commit: {incoming} messages in {:.2} s: {:.0} messages/s",
        wall.as_secs_f64(),
        incoming as f64 / wall.as_secs_f64().max(1e-9)
    );
    drop(db);
    let bytes = std::fs::metadata(&path).map_err(net)?.len();
    println!(
        "  on disk: {bytes} bytes for {messages} messages of history: {:.0} bytes per {size}-byte message",
        bytes as f64 / messages as f64
    );
    // Start-up and memory, each in a fresh process: with this history, and with none.
    let empty = dir.join("empty");
    crate::keystore::ensure_private_dir(&empty).map_err(net)?;
    drop(
        SqliteStore::create(&empty.join(STORE_FILE), Some(BENCH_PASSPHRASE), options)
            .map_err(net)?,
    );
    let exe = std::env::current_exe().map_err(net)?;
    for (label, d) in [("empty store", &empty), ("with the history", &dir)] {
        let out = std::process::Command::new(&exe)
            .args(["bench", "store-open"])
            .arg(d)
            .output()
            .map_err(net)?;
        println!(
            "  open, {label}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn store_open(dir: &std::path::Path) -> Result<(), CliError> {
    use p2pchat_async_std::store::vault::KdfParams;
    use p2pchat_async_std::store::{OpenOptions, STORE_FILE, SqliteStore};
    let started = Instant::now();
    let kdf = KdfParams::fresh().map_err(net)?;
    kdf.derive(BENCH_PASSPHRASE).map_err(net)?;
    let argon = started.elapsed();
    let started = Instant::now();
    let db = SqliteStore::open(
        &dir.join(STORE_FILE),
        Some(BENCH_PASSPHRASE),
        OpenOptions { history: true },
    )
    .map_err(net)?;
    let page = db
        .read_history(&Nick::new("bob").map_err(net)?, 20)
        .map_err(net)?;
    let wall = started.elapsed();
    let pid = std::process::id();
    println!(
        "{:.0} ms to open and read the newest {} messages (of which Argon2id {:.0} ms); peak RSS {} KiB",
        wall.as_secs_f64() * 1e3,
        page.len(),
        argon.as_secs_f64() * 1e3,
        status_kib(pid, "VmHWM:").unwrap_or(0)
    );
    Ok(())
}

/// Stores the operations of `total` messages (`ops(n)` makes those of `n`), `batch`
/// messages per transaction; returns how long it took.
fn in_commits_of(
    db: &mut p2pchat_async_std::store::SqliteStore,
    total: usize,
    batch: usize,
    ops: &mut dyn FnMut(usize) -> Vec<p2pchat_core::peer::StoreOp>,
) -> Result<Duration, CliError> {
    use p2pchat_async_std::store::PeerStore;
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let n = batch.min(total - done);
        db.apply(&ops(n)).map_err(net)?;
        done += n;
    }
    Ok(started.elapsed())
}
