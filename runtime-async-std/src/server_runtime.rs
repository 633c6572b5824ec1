//! The registry server's runtime: accepts TCP connections, upgrades them to WebSocket, and
//! drives the core `Registry` with what arrives. Limits (connections, frame size, rate,
//! registration attempts, heartbeat) are the core's; this adds the WebSocket handshake
//! timeout and per-connection write queues.

use core::time::Duration;
use std::collections::BTreeMap;

use async_std::channel::{Receiver, Sender, bounded};
use async_std::net::{TcpListener, TcpStream};
use async_tungstenite::WebSocketStream;
use p2pchat_core::conn::ConnId;
use p2pchat_core::registry::{BindingOp, Registry, RegistryOutput};

use crate::clock::{Clock, Wake, next_input};
use crate::store::RegistryStore;
use crate::websocket::server_config;
use crate::wire::{Wire, WireEvent, WireWriter, WriteBudget, accept_loop, spawn_wire};

/// Server settings beyond the core's.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Time a new connection has to finish the WebSocket handshake (slow-loris defence).
    pub handshake_timeout: Duration,
    /// Frames queued for a client before it counts as not reading and is dropped.
    pub write_queue: usize,
    /// Bytes queued for a client before it counts as not reading and is dropped.
    pub write_bytes_per_client: usize,
    /// Bytes queued over all clients: past it, a client with something already waiting
    /// is dropped rather than given more.
    pub write_bytes_total: usize,
    /// Time given to queued frames (such as "shutting down") when stopping.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            write_queue: 64,
            write_bytes_per_client: 256 << 10,
            write_bytes_total: 256 << 20,
            shutdown_grace: Duration::from_millis(500),
        }
    }
}

/// Ask a running server to stop: it tells its clients and closes their connections.
#[derive(Debug, Clone)]
pub struct StopServer(Sender<ServerInput>);

impl StopServer {
    /// Stops the server (idempotent).
    pub fn stop(&self) {
        let _ = self.0.try_send(ServerInput::Stop);
    }
}

/// What the server loop reacts to.
#[derive(Debug)]
pub enum ServerInput {
    /// Connection I/O.
    Wire(WireEvent),
    /// A new TCP connection.
    Accepted(TcpStream),
    /// A WebSocket handshake finished (or failed: `None`).
    Upgraded(ConnId, Option<(Box<WebSocketStream<TcpStream>>, TcpStream)>),
    /// Stop.
    Stop,
}

impl From<WireEvent> for ServerInput {
    fn from(e: WireEvent) -> Self {
        Self::Wire(e)
    }
}

/// Runs the registry on `listener` until stopped. Returns a handle to stop it and the
/// task that runs it, which ends with the store's error if the store cannot be used at
/// all (so that a supervisor sees a failure as one); a store that refuses writes for a
/// while (a full disk) only pauses new registrations. `store` keeps the nick bindings
/// across restarts (without one they last as long as the process).
pub fn spawn_server(
    core: Registry,
    listener: TcpListener,
    settings: ServerSettings,
    store: Option<RegistryStore>,
) -> (
    StopServer,
    async_std::task::JoinHandle<Result<(), crate::store::StoreError>>,
) {
    let (tx, rx) = bounded(1024);
    let stop = StopServer(tx.clone());
    let accept_tx = tx.clone();
    let task = async_std::task::spawn(async move {
        let acceptor =
            async_std::task::spawn(accept_loop(listener, accept_tx, ServerInput::Accepted));
        let write_budget =
            WriteBudget::new(settings.write_bytes_per_client, settings.write_bytes_total);
        let mut server = Server {
            core,
            write_budget,
            settings,
            clock: Clock::start(),
            inbox: tx,
            writers: BTreeMap::new(),
            upgrading: BTreeMap::new(),
            store_retry_at: None,
            clock_watch: ClockWatch::start(),
            store,
        };
        if let Some(last) = server.store.as_ref().and_then(RegistryStore::last_wall) {
            server.clock_watch.since_last_run(last);
        }
        let result = server.run(rx).await;
        acceptor.cancel().await;
        result
    });
    (stop, task)
}

/// Most inputs handled between two drains (one store transaction).
const BATCH: usize = 256;

struct Server {
    core: Registry,
    /// Caps the bytes queued for every client, and in total.
    write_budget: WriteBudget,
    settings: ServerSettings,
    clock: Clock,
    inbox: Sender<ServerInput>,
    writers: BTreeMap<ConnId, WireWriter>,
    /// Connections still in the WebSocket handshake, with what the core already sent them.
    upgrading: BTreeMap<ConnId, Vec<Vec<u8>>>,
    store: Option<RegistryStore>,
    /// While the store refuses writes: when it is tried again.
    store_retry_at: Option<p2pchat_core::time::Instant>,
    /// Notices a wall clock that jumps (only logged: the registry's reservations run on its
    /// own clock).
    clock_watch: ClockWatch,
}

/// How often a store that refused a write is tried again.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// A wall clock that moves apart from the monotonic one by more than this has jumped.
const CLOCK_JUMP: Duration = Duration::from_secs(60);

/// The wall clock against the monotonic one, to tell the operator when it jumps: the
/// registry goes on by its own clock either way (`p2pchat_core::registry::RegistryTime`).
struct ClockWatch {
    wall: std::time::SystemTime,
    mono: std::time::Instant,
}

impl ClockWatch {
    fn start() -> Self {
        Self {
            wall: std::time::SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }

    /// Logs how the wall clock now compares with `last`, when the registry last stored
    /// its clock.
    fn since_last_run(&self, last: p2pchat_core::peer::WallTime) {
        let now = crate::local::wall_clock();
        if now < last {
            tracing::warn!(
                behind_s = (last.0 - now.0) / 1000,
                "the wall clock is behind the time this registry last ran: it went back; reservations count the registry's own running time, so none is longer or shorter for it"
            );
        } else if now.0 - last.0 > 86_400_000 {
            tracing::warn!(
                days = (now.0 - last.0) / 86_400_000,
                "by the wall clock this registry last ran days ago (or the clock jumped ahead); reservations count only the time the registry runs, so none lapsed meanwhile"
            );
        }
    }

    /// Logs a jump since the last check, and starts counting from now.
    fn check(&mut self) {
        let mono = self.mono.elapsed();
        let wall = self.wall.elapsed();
        let (ahead, by) = match wall {
            Ok(w) if w >= mono => (true, w - mono),
            Ok(w) => (false, mono - w),
            Err(e) => (false, mono + e.duration()),
        };
        if by > CLOCK_JUMP {
            tracing::warn!(
                by_s = by.as_secs(),
                direction = if ahead { "ahead" } else { "back" },
                "the wall clock jumped; the registry goes on by its own running time"
            );
        }
        *self = Self::start();
    }
}

impl Server {
    async fn run(&mut self, inbox: Receiver<ServerInput>) -> Result<(), crate::store::StoreError> {
        loop {
            if let Err(e) = self.drain() {
                self.stop().await;
                return Err(e);
            }
            let deadline = self
                .core
                .poll_timeout()
                .into_iter()
                .chain(self.store_retry_at)
                .min();
            match next_input(&inbox, &self.clock, deadline).await {
                Ok(Wake::Input(ServerInput::Stop)) | Err(_) => break,
                Ok(Wake::Input(input)) => {
                    self.handle(input);
                    // What else has arrived is handled before the next drain, so the binding
                    // changes of many registrations share one transaction (one fsync).
                    for _ in 1..BATCH {
                        match inbox.try_recv() {
                            Ok(ServerInput::Stop) => {
                                self.stop().await;
                                return Ok(());
                            }
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                    // A busy registry may never wake for its timer: the store is tried
                    // again when due all the same.
                    let now = self.clock.now();
                    if self.store_retry_at.is_some_and(|t| t <= now) {
                        self.retry_store(now);
                    }
                }
                Ok(Wake::Timer) => {
                    let now = self.clock.now();
                    self.clock_watch.check();
                    if self.store_retry_at.is_some_and(|t| t <= now) {
                        self.retry_store(now);
                    }
                    self.core.handle_timeout(now);
                }
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Tells every client the registry is going away, then closes.
    async fn stop(&mut self) {
        tracing::info!(
            clients = self.writers.len(),
            "registry stopping: telling clients"
        );
        self.core.shutdown();
        let _ = self.drain();
        // Dropping the writers flushes what is queued, then closes each connection.
        self.writers.clear();
        async_std::task::sleep(self.settings.shutdown_grace).await;
    }

    /// Stores `ops` in one transaction.
    fn store(&mut self, ops: &[BindingOp]) -> Result<(), crate::store::StoreError> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        if ops.is_empty() {
            return Ok(());
        }
        store.apply(ops)
    }

    /// The store refused the writes of a drain (a full disk): none of that drain's outputs
    /// may act. The core is handed them back with what the store holds
    /// (`Registry::writes_refused` decides what each client is told).
    /// Lookups, lists and registered users go on. An error only if the store cannot even
    /// be read: then the registry cannot go on.
    fn store_refused(
        &mut self,
        error: &crate::store::StoreError,
        outputs: Vec<RegistryOutput>,
    ) -> Result<(), crate::store::StoreError> {
        tracing::error!(
            "the registry cannot store ({error}): it goes on serving lookups and registered users, and refuses new registrations until it can (tried every {} s)",
            STORE_RETRY.as_secs()
        );
        let Some(store) = &self.store else {
            return Ok(());
        };
        let bindings = store.bindings()?;
        self.core.writes_refused(bindings, outputs);
        self.store_retry_at = Some(self.clock.now() + STORE_RETRY);
        Ok(())
    }

    /// Whether the store takes writes again; if it does, so does the core.
    fn retry_store(&mut self, now: p2pchat_core::time::Instant) {
        let Some(store) = &mut self.store else {
            self.store_retry_at = None;
            return;
        };
        match store.writable() {
            Ok(()) => {
                // At the level of the refusal it ends, so that whoever saw one sees the other.
                tracing::warn!("the registry can store again: new registrations are taken");
                self.store_retry_at = None;
                self.core.store_available_again();
            }
            Err(e) => {
                tracing::debug!("the store still refuses writes: {e}");
                self.store_retry_at = Some(now + STORE_RETRY);
            }
        }
    }

    /// Does what the core asks. Group commit: every binding change of the pending outputs
    /// is stored, in one transaction, before any of them acts (no answer leaves before
    /// what it reports is stored). An error if the store failed and cannot be read.
    fn drain(&mut self) -> Result<(), crate::store::StoreError> {
        loop {
            let outputs: Vec<RegistryOutput> =
                std::iter::from_fn(|| self.core.poll_output()).collect();
            if outputs.is_empty() {
                return Ok(());
            }
            let ops: Vec<BindingOp> = outputs
                .iter()
                .filter_map(|o| match o {
                    RegistryOutput::Store(op) => Some(op.clone()),
                    _ => None,
                })
                .collect();
            if let Err(e) = self.store(&ops) {
                self.store_refused(&e, outputs)?;
                continue;
            }
            for output in outputs {
                match output {
                    RegistryOutput::Store(_) => {}
                    RegistryOutput::Transmit { conn, bytes } => {
                        if let Some(queued) = self.upgrading.get_mut(&conn) {
                            queued.push(bytes);
                            continue;
                        }
                        let slow = self
                            .writers
                            .get(&conn)
                            .is_some_and(|w| w.send(bytes).is_err());
                        if slow {
                            tracing::debug!(?conn, "client does not read; dropping it");
                            self.writers.remove(&conn);
                            self.core.handle_closed(conn);
                        }
                    }
                    RegistryOutput::Presence { conn, bytes } => {
                        if let Some(queued) = self.upgrading.get_mut(&conn) {
                            queued.push(bytes);
                            continue;
                        }
                        let dropped = self
                            .writers
                            .get(&conn)
                            .is_some_and(|w| w.offer(bytes).is_err());
                        if dropped {
                            tracing::debug!(?conn, "client reads slowly; presence coalesced");
                            self.core.handle_presence_dropped(conn);
                        }
                    }
                    RegistryOutput::Close { conn } => {
                        self.writers.remove(&conn);
                        self.upgrading.remove(&conn);
                    }
                }
            }
        }
    }

    fn handle(&mut self, input: ServerInput) {
        let now = self.clock.now();
        match input {
            ServerInput::Wire(WireEvent::Received(conn, bytes)) => {
                if self.writers.contains_key(&conn) {
                    self.core.handle_received(now, conn, &bytes);
                }
            }
            ServerInput::Wire(WireEvent::Closed(conn)) => {
                if self.writers.remove(&conn).is_some() {
                    tracing::debug!(?conn, "client disconnected");
                    self.core.handle_closed(conn);
                }
            }
            ServerInput::Accepted(stream) => match self.core.accept_connection(now) {
                Ok(conn) => {
                    self.upgrading.insert(conn, Vec::new());
                    let timeout = self.settings.handshake_timeout;
                    let to_loop = self.inbox.clone();
                    async_std::task::spawn(async move {
                        let raw = stream.clone();
                        let upgrade = async_tungstenite::accept_async_with_config(
                            stream,
                            Some(server_config()),
                        );
                        let result = match async_std::future::timeout(timeout, upgrade).await {
                            Ok(Ok(ws)) => Some((Box::new(ws), raw)),
                            _ => None,
                        };
                        let _ = to_loop.send(ServerInput::Upgraded(conn, result)).await;
                    });
                }
                Err(e) => {
                    tracing::debug!("refused a connection: {e}");
                    drop(stream);
                }
            },
            ServerInput::Upgraded(conn, result) => {
                let Some(queued) = self.upgrading.remove(&conn) else {
                    return;
                };
                match result {
                    Some((ws, raw)) => {
                        let wire = Wire::Ws { ws, raw };
                        let writer = spawn_wire(
                            conn,
                            wire,
                            self.settings.write_queue,
                            &self.write_budget,
                            self.inbox.clone(),
                        );
                        for bytes in queued {
                            // A fresh queue holds the few frames sent during the handshake.
                            let _ = writer.send(bytes);
                        }
                        self.writers.insert(conn, writer);
                    }
                    None => self.core.handle_closed(conn),
                }
            }
            ServerInput::Stop => {}
        }
    }
}
