//! The peer's runtime: one task owns the core `Peer` and does what it asks — dial through
//! the transport, listen for inbound streams from our onion service, move bytes, fire its
//! timer — and relays user commands in and events out. No protocol decisions here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_std::channel::{Receiver, Sender, bounded};
use async_std::net::{TcpListener, TcpStream};
use async_std::task::JoinHandle;
use p2pchat_core::conn::ConnId;
use p2pchat_core::identity::Fingerprint;
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{
    ChatState, CommandError, Event, Input, Output, Peer, PeerState, PeerView, StoreOp, Target,
};

use crate::clock::{Clock, Wake, next_input};
use crate::store::{PeerStore, StoreError};
use crate::transport::Transport;
use crate::updates::{Publisher, Subscription, Update};
use crate::websocket::open_registry;
use crate::wire::{Wire, WireEvent, WireWriter, WriteBudget, accept_loop, spawn_wire};

/// A user's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Register (and stay registered).
    Register,
    /// List online users whose nick starts with `prefix`, after `after`.
    Users {
        /// Nick prefix ("" for everyone).
        prefix: String,
        /// Continue after this nick.
        after: Option<Nick>,
    },
    /// Open a chat.
    Connect(Nick),
    /// Accept a connection request.
    Accept(u64),
    /// Deny a connection request with a reason.
    Deny(u64, String),
    /// Send a message.
    Send(Nick, String),
    /// Close a chat.
    Close(Nick, String),
    /// Retry a chat that waits to reconnect.
    Retry(Nick),
    /// The chats and their states.
    Chats,
    /// The fingerprint of our key (`None`) or of a contact's.
    Fingerprint(Option<Nick>),
    /// Every contact.
    Contacts,
    /// Messages waiting to be delivered.
    Outbox,
    /// The last messages with a contact.
    History(Nick, usize),
    /// Accept a contact's changed key if its fingerprint is this one.
    Verify(Nick, p2pchat_core::identity::Fingerprint),
    /// Settle a contact's key conflict for this key (pinned or presented) without checking.
    Trust(Nick, p2pchat_core::identity::Fingerprint),
    /// Refuse a nick's requests without asking.
    Block(Nick),
    /// Undo `Block`.
    Unblock(Nick),
    /// Withdraw a queued message.
    Cancel(Nick, u64),
    /// The user has read what arrived from this nick.
    MarkRead(Nick),
    /// Close every chat, unregister, and stop.
    Shutdown,
}

/// A command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done (results follow as events).
    Done,
    /// The id of the message sent.
    MessageId(u64),
    /// The chats and their states.
    Chats(Vec<(Nick, ChatState)>),
    /// A fingerprint, if known.
    Fingerprint(Option<Fingerprint>),
    /// The contacts.
    Contacts(Vec<p2pchat_core::peer::ContactView>),
    /// The outbox: each waiting message, and how long until its contact is tried next.
    Outbox(
        Vec<(
            p2pchat_core::peer::QueuedMessage,
            Option<core::time::Duration>,
        )>,
    ),
    /// History entries, oldest first.
    History(Vec<crate::store::HistoryItem>),
    /// The store could not be read.
    StoreError(String),
}

/// Where the registry is and how to reach everything.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Tor (SOCKS) or direct.
    pub transport: Transport,
    /// The registry's host (an onion hostname, or loopback in direct mode).
    pub registry_host: String,
    /// The registry's port.
    pub registry_port: u16,
}

/// The runtime stopped (it finished shutting down, or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("p2pchat's peer loop has stopped")]
pub struct Stopped;

/// Handle to a running peer.
pub struct PeerHandle {
    inbox: Sender<LoopInput>,
    publisher: Publisher,
    task: JoinHandle<Result<(), StoreError>>,
}

impl core::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerHandle").finish_non_exhaustive()
    }
}

impl PeerHandle {
    /// Carries out `command` and returns its answer.
    pub async fn command(&self, command: Command) -> Result<Result<Answer, CommandError>, Stopped> {
        let (tx, rx) = bounded(1);
        self.inbox
            .send(LoopInput::Command(command, tx))
            .await
            .map_err(|_| Stopped)?;
        rx.recv().await.map_err(|_| Stopped)
    }

    /// Another stream of every event from now on (each subscriber gets them all).
    pub fn subscribe(&self) -> Subscription {
        self.publisher.subscribe()
    }

    /// What the user sees, as of the loop's last drain.
    pub fn view(&self) -> Arc<PeerView> {
        self.publisher.view()
    }

    /// Waits for the peer loop to end (after `Shutdown`, or if it failed). An error says
    /// the store could not be written: the loop stopped rather than go on without it.
    pub async fn join(self) -> Result<(), StoreError> {
        drop(self.inbox);
        self.task.await
    }
}

/// Everything the loop reacts to, in one channel.
#[derive(Debug)]
enum LoopInput {
    Wire(WireEvent),
    Dialed {
        conn: ConnId,
        result: Result<Wire, String>,
    },
    Accepted(TcpStream),
    Command(Command, Sender<Result<Answer, CommandError>>),
}

impl From<WireEvent> for LoopInput {
    fn from(e: WireEvent) -> Self {
        Self::Wire(e)
    }
}

impl core::fmt::Debug for Wire {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Wire::Tcp",
            Self::Ws { .. } => "Wire::Ws",
        })
    }
}

/// A command's answer and where it goes.
type CommandReply = (
    Sender<Result<Answer, CommandError>>,
    Result<Answer, CommandError>,
);

/// Most inputs handled between two drains (one store transaction).
const BATCH: usize = 256;

/// Frames queued per connection before it counts as too slow and is dropped.
const WRITE_QUEUE: usize = 1024;
/// Bytes queued per connection (16 frames of the largest size), and over all of them.
const WRITE_BYTES_PER_CONNECTION: usize = 1 << 20;
const WRITE_BYTES_TOTAL: usize = 64 << 20;
/// Inputs queued for the loop (readers wait when it is full: backpressure, not loss).
const INBOX: usize = 1024;

/// How often a store that refused a write is tried again.
const STORE_RETRY: core::time::Duration = core::time::Duration::from_secs(5);

/// The connection ids of one core live below this bit; the bits above it number the core
/// (a core is rebuilt from the store after a write failed), so that a connection of a core
/// that was dropped can never be taken for one of the core that replaced it.
const GENERATION_SHIFT: u32 = 48;

/// Starts the peer: accepts inbound streams on `listener` (where our onion service
/// forwards), and runs `core` until it has shut down. `store` keeps what the core asks to
/// store, before anything that follows it happens. The subscription returned gets every
/// event from the start; the loop stops when every subscription is gone.
pub fn spawn_peer(
    core: Peer,
    settings: PeerSettings,
    listener: TcpListener,
    store: Box<dyn PeerStore>,
) -> (PeerHandle, Subscription) {
    let (inbox_tx, inbox_rx) = bounded(INBOX);
    let publisher = Publisher::new(core.view());
    let first = publisher.subscribe();
    let accept_tx = inbox_tx.clone();
    let listener_task =
        async_std::task::spawn(accept_loop(listener, accept_tx, LoopInput::Accepted));
    let loop_tx = inbox_tx.clone();
    let loop_publisher = publisher.clone();
    let task = async_std::task::spawn(async move {
        let mut state = LoopState {
            core,
            settings,
            clock: Clock::start(),
            inbox: loop_tx,
            writers: BTreeMap::new(),
            write_budget: WriteBudget::new(WRITE_BYTES_PER_CONNECTION, WRITE_BYTES_TOTAL),
            dialing: BTreeSet::new(),
            publisher: loop_publisher,
            store: Arc::new(Mutex::new(store)),
            unstored: Vec::new(),
            generation: 0,
        };
        let result = state.run(inbox_rx).await;
        state.publisher.close();
        listener_task.cancel().await;
        if let Err(e) = &result {
            tracing::error!("the peer stopped: {e}");
        }
        result
    });
    let handle = PeerHandle {
        inbox: inbox_tx,
        publisher,
        task,
    };
    (handle, first)
}

struct LoopState {
    core: Peer,
    settings: PeerSettings,
    clock: Clock,
    inbox: Sender<LoopInput>,
    writers: BTreeMap<ConnId, WireWriter>,
    /// Caps the bytes queued for every connection, and in total.
    write_budget: WriteBudget,
    dialing: BTreeSet<ConnId>,
    /// Events to every subscriber, and the view after each drain.
    publisher: Publisher,
    /// Shared with the blocking thread that writes it (fsync must not stall the loop's
    /// executor thread, which also runs the connection tasks).
    store: Arc<Mutex<Box<dyn PeerStore>>>,
    /// Store operations of the drain in progress, applied together (one transaction)
    /// before the next output that is not one.
    unstored: Vec<StoreOp>,
    /// Which core this is: 0, then one more each time the core is rebuilt from the store.
    /// `writers` and `dialing` hold connection ids with it in the high bits.
    generation: u64,
}

/// Why the loop stops.
enum Stop {
    /// The user interface went away, or the core shut down.
    Done,
    /// The store failed: nothing more may be sent or acknowledged.
    Store(StoreError),
}

impl LoopState {
    async fn run(&mut self, inbox: Receiver<LoopInput>) -> Result<(), StoreError> {
        // Answers to commands handled since the last drain: sent once it stored what the
        // commands changed, so an accepted message is never lost to a crash.
        let mut replies = Vec::new();
        loop {
            let drained = self.drain().await;
            // A failed store means nothing the commands changed is stored: their answers
            // ("#18 queued") would be false, so each is answered with the failure instead.
            if let Err(Stop::Store(e)) = &drained {
                let failed = paused_answer(e);
                for (reply, _) in replies.drain(..) {
                    let _ = Sender::try_send(&reply, Ok(failed.clone()));
                }
            }
            for (reply, answer) in replies.drain(..) {
                let _ = Sender::try_send(&reply, answer);
            }
            match drained {
                Ok(()) if self.core.is_shut_down() => return Ok(()),
                Ok(()) => {}
                Err(Stop::Done) => return Ok(()),
                Err(Stop::Store(e)) => {
                    self.pause(e, &inbox).await?;
                    continue;
                }
            }
            match next_input(&inbox, &self.clock, self.core.poll_timeout()).await {
                Ok(Wake::Input(input)) => {
                    self.handle(input, &mut replies);
                    // Group commit: what else has arrived meanwhile is handled before the
                    // next drain, so its store operations share one transaction.
                    for _ in 1..BATCH {
                        match inbox.try_recv() {
                            Ok(input) => self.handle(input, &mut replies),
                            Err(_) => break,
                        }
                    }
                }
                Ok(Wake::Timer) => self.core.handle_timeout(self.clock.now()),
                Err(_) => return Ok(()),
            }
        }
    }

    /// The store refused a write: what the core did since its last stored write must not
    /// reach the world, so the core is dropped with every connection (peers see them
    /// close, and resend what we did not acknowledge), and nothing is accepted until the
    /// store takes writes again — tried every [`STORE_RETRY`]. Then a core is rebuilt from
    /// what the store holds, as after a restart, and registers again. Commands meanwhile
    /// answer with the failure; history can still be read. Quitting while paused ends the
    /// loop with the store's error.
    async fn pause(
        &mut self,
        error: StoreError,
        inbox: &Receiver<LoopInput>,
    ) -> Result<(), StoreError> {
        tracing::error!("storing failed, paused until the store takes writes again: {error}");
        self.writers.clear();
        self.dialing.clear();
        self.unstored.clear();
        if !self
            .publisher
            .publish(Update::StorePaused(error.to_string()))
        {
            return Err(error);
        }
        let mut last = error;
        // Fixed per attempt: inputs arriving meanwhile (a peer dialling in again and again)
        // must not put the next try off.
        let mut retry_at = self.clock.now() + STORE_RETRY;
        loop {
            let due = match next_input(inbox, &self.clock, Some(retry_at)).await {
                Ok(Wake::Input(LoopInput::Command(command, reply))) => {
                    let answer = match command {
                        Command::Shutdown => {
                            let _ = reply.try_send(Ok(Answer::Done));
                            return Err(last);
                        }
                        Command::History(nick, limit) => self.history(&nick, limit),
                        _ => paused_answer(&last),
                    };
                    let _ = reply.try_send(Ok(answer));
                    self.clock.now() >= retry_at
                }
                // Connections of the dropped core, and new ones: dropped (they close).
                Ok(Wake::Input(_)) => self.clock.now() >= retry_at,
                Ok(Wake::Timer) => true,
                Err(_) => return Err(last),
            };
            if !due {
                continue;
            }
            match self.recover().await.and_then(|s| self.rebuild(s)) {
                Ok(()) => {
                    tracing::warn!("the store takes writes again; carrying on");
                    return if self.publisher.publish(Update::StoreResumed) {
                        Ok(())
                    } else {
                        Err(last)
                    };
                }
                Err(e) => last = e,
            }
            retry_at = self.clock.now() + STORE_RETRY;
        }
    }

    /// Whether the store takes writes again, and what it holds.
    async fn recover(&mut self) -> Result<PeerState, StoreError> {
        let store = Arc::clone(&self.store);
        async_std::task::spawn_blocking(move || match store.lock() {
            Ok(mut store) => store.recover(),
            Err(_) => Err(poisoned()),
        })
        .await
    }

    /// A new core from `state`, with the old one's configuration and identity, numbering
    /// its connections apart from the old one's; it registers again.
    fn rebuild(&mut self, state: PeerState) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut rng = crate::rng::os_rng().map_err(|e| StoreError::Crypto(e.to_string()))?;
        let core = Peer::restore(
            self.core.config().clone(),
            self.core.identity().clone(),
            state,
            &mut rng,
            now,
            crate::local::wall_clock(),
        );
        self.core = core;
        self.generation += 1;
        self.core.register(now);
        Ok(())
    }

    /// The last `limit` messages with `nick`, from the store.
    fn history(&self, nick: &Nick, limit: usize) -> Answer {
        let history = match self.store.lock() {
            Ok(store) => store.history(nick, limit),
            Err(_) => Err(poisoned()),
        };
        match history {
            Ok(entries) => Answer::History(entries),
            Err(e) => Answer::StoreError(e.to_string()),
        }
    }

    /// The runtime's id of the current core's connection `conn`.
    fn outer(&self, conn: ConnId) -> ConnId {
        debug_assert!(
            conn.0 >> GENERATION_SHIFT == 0,
            "a core opened 2^48 connections"
        );
        ConnId(self.generation << GENERATION_SHIFT | conn.0)
    }

    /// The current core's id of the runtime's connection `conn`, if it is one of its.
    fn inner(&self, conn: ConnId) -> Option<ConnId> {
        (conn.0 >> GENERATION_SHIFT == self.generation)
            .then_some(ConnId(conn.0 & ((1 << GENERATION_SHIFT) - 1)))
    }

    /// Applies the store operations gathered so far, in one transaction.
    async fn flush_store(&mut self) -> Result<(), Stop> {
        if self.unstored.is_empty() {
            return Ok(());
        }
        let ops = std::mem::take(&mut self.unstored);
        let store = Arc::clone(&self.store);
        async_std::task::spawn_blocking(move || match store.lock() {
            Ok(mut store) => {
                let started = std::time::Instant::now();
                let result = store.apply(&ops);
                tracing::trace!(ops = ops.len(), elapsed = ?started.elapsed(), "stored");
                result
            }
            Err(_) => Err(poisoned()),
        })
        .await
        .map_err(Stop::Store)
    }

    /// Does what the core asks, storing first what it asks to store.
    ///
    /// Group commit: every store operation of the outputs pending now is applied in one
    /// transaction before any of those outputs acts on the world (a transmit, a dial, an
    /// event the user sees). Storing an operation before outputs that came earlier is
    /// always safe; acting before an earlier store never happens.
    async fn drain(&mut self) -> Result<(), Stop> {
        loop {
            let mut acts = Vec::new();
            while let Some(output) = self.core.poll_output() {
                match output {
                    Output::Store(op) => self.unstored.push(op),
                    other => acts.push(other),
                }
            }
            if acts.is_empty() && self.unstored.is_empty() {
                return Ok(());
            }
            // The view first: an interface that reacts to these events reads a view that
            // already has their effects (a request to answer, a chat to draw).
            self.publisher.publish_view(self.core.view());
            self.flush_store().await?;
            for output in acts {
                match output {
                    Output::Event(event) => self.show(event)?,
                    other => self.act(other),
                }
            }
        }
    }

    /// Hands an event to every user interface; stops once none is left.
    fn show(&mut self, event: Event) -> Result<(), Stop> {
        if self.publisher.publish_event(&event) {
            Ok(())
        } else {
            Err(Stop::Done)
        }
    }

    /// Carries out an output that acts on the world.
    fn act(&mut self, output: Output) {
        match output {
            Output::Connect { conn, target } => self.dial(conn, target),
            Output::Transmit { conn, bytes } => {
                let outer = self.outer(conn);
                let slow = self
                    .writers
                    .get(&outer)
                    .is_some_and(|w| w.send(bytes).is_err());
                if slow {
                    tracing::debug!(?conn, "peer too slow to read; dropping the connection");
                    self.writers.remove(&outer);
                    self.core
                        .handle_input(self.clock.now(), Input::Closed { conn });
                }
            }
            Output::Close { conn } => {
                let outer = self.outer(conn);
                self.writers.remove(&outer);
                self.dialing.remove(&outer);
            }
            Output::Store(_) | Output::Event(_) => {
                debug_assert!(false, "stores and events are handled by drain");
            }
        }
    }

    fn handle(&mut self, input: LoopInput, replies: &mut Vec<CommandReply>) {
        let now = self.clock.now();
        match input {
            LoopInput::Wire(WireEvent::Received(outer, bytes)) => {
                if let (true, Some(conn)) = (self.writers.contains_key(&outer), self.inner(outer)) {
                    self.core.handle_input(
                        now,
                        Input::Received {
                            conn,
                            bytes: &bytes,
                        },
                    );
                }
            }
            LoopInput::Wire(WireEvent::Closed(outer)) => {
                if let (Some(_), Some(conn)) = (self.writers.remove(&outer), self.inner(outer)) {
                    self.core.handle_input(now, Input::Closed { conn });
                }
            }
            LoopInput::Dialed {
                conn: outer,
                result,
            } => {
                // A dial the core has given up on meanwhile is dropped (and so closed).
                let Some(conn) = self.inner(outer).filter(|_| self.dialing.remove(&outer)) else {
                    return;
                };
                match result {
                    Ok(wire) => {
                        let writer = spawn_wire(
                            outer,
                            wire,
                            WRITE_QUEUE,
                            &self.write_budget,
                            self.inbox.clone(),
                        );
                        self.writers.insert(outer, writer);
                        self.core.handle_input(now, Input::Connected { conn });
                    }
                    Err(reason) => self
                        .core
                        .handle_input(now, Input::ConnectFailed { conn, reason }),
                }
            }
            LoopInput::Accepted(stream) => match self.core.accept_incoming(now) {
                Ok(conn) => {
                    let outer = self.outer(conn);
                    let writer = spawn_wire(
                        outer,
                        Wire::Tcp(stream),
                        WRITE_QUEUE,
                        &self.write_budget,
                        self.inbox.clone(),
                    );
                    self.writers.insert(outer, writer);
                }
                Err(e) => tracing::debug!("refused an inbound connection: {e}"),
            },
            LoopInput::Command(command, reply) => {
                let answer = self.execute(now, command);
                replies.push((reply, answer));
            }
        }
    }

    fn execute(
        &mut self,
        now: p2pchat_core::time::Instant,
        command: Command,
    ) -> Result<Answer, CommandError> {
        let core = &mut self.core;
        match command {
            Command::Register => core.register(now),
            Command::Users { prefix, after } => core.refresh_users(now, &prefix, after.as_ref()),
            Command::Connect(nick) => core.connect(now, &nick)?,
            Command::Accept(request) => core.accept(now, request)?,
            Command::Deny(request, reason) => core.deny(now, request, &reason)?,
            Command::Send(nick, text) => {
                return core.send(now, &nick, &text).map(Answer::MessageId);
            }
            Command::Close(nick, reason) => core.close_chat(now, &nick, &reason)?,
            Command::Retry(nick) => core.retry_now(now, &nick)?,
            Command::Chats => {
                let chats = core
                    .chats()
                    .cloned()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .filter_map(|n| core.chat_state(&n).cloned().map(|s| (n, s)))
                    .collect();
                return Ok(Answer::Chats(chats));
            }
            Command::Fingerprint(None) => {
                return Ok(Answer::Fingerprint(Some(
                    core.identity().rsa.public().fingerprint(),
                )));
            }
            Command::Fingerprint(Some(nick)) => {
                return Ok(Answer::Fingerprint(core.chat_fingerprint(&nick)));
            }
            Command::Contacts => return Ok(Answer::Contacts(core.contacts())),
            Command::Outbox => {
                let waiting = core
                    .state()
                    .outbox
                    .values()
                    .flatten()
                    .map(|m| {
                        let next = core.contact(&m.to).and_then(|c| c.next_delivery);
                        (m.clone(), next.map(|t| t.saturating_duration_since(now)))
                    })
                    .collect();
                return Ok(Answer::Outbox(waiting));
            }
            Command::History(nick, limit) => return Ok(self.history(&nick, limit)),
            Command::Verify(nick, fingerprint) => core.verify(now, &nick, fingerprint)?,
            Command::Trust(nick, fingerprint) => core.trust(now, &nick, fingerprint)?,
            Command::Block(nick) => core.block(now, &nick)?,
            Command::Unblock(nick) => core.unblock(now, &nick)?,
            Command::Cancel(nick, id) => core.cancel(now, &nick, id)?,
            Command::MarkRead(nick) => core.mark_read(&nick),
            Command::Shutdown => core.shutdown(now),
        }
        Ok(Answer::Done)
    }

    fn dial(&mut self, conn: ConnId, target: Target) {
        let conn = self.outer(conn);
        self.dialing.insert(conn);
        let transport = self.settings.transport.clone();
        let registry = (
            self.settings.registry_host.clone(),
            self.settings.registry_port,
        );
        let to_loop = self.inbox.clone();
        async_std::task::spawn(async move {
            let result = match target {
                Target::Registry => open_registry(&transport, &registry.0, registry.1)
                    .await
                    .map_err(|e| e.to_string()),
                Target::Peer { onion, port } => transport
                    .dial(&onion.hostname(), port)
                    .await
                    .map(Wire::Tcp)
                    .map_err(|e| e.to_string()),
            };
            let _ = to_loop.send(LoopInput::Dialed { conn, result }).await;
        });
    }
}

/// What a command is answered while the store refuses writes.
fn paused_answer(error: &StoreError) -> Answer {
    Answer::StoreError(format!(
        "{error}. Nothing was done: p2pchat is paused until it can store again (it tries every {} s)",
        STORE_RETRY.as_secs()
    ))
}

/// The store's mutex was poisoned: its writer thread panicked mid-write.
fn poisoned() -> StoreError {
    StoreError::Crypto("the store was left inconsistent by a crash of its writer".into())
}
