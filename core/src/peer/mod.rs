//! The peer: one state machine owning the registry link and every chat.
//!
//! Drive it like quinn-proto's `Connection` or str0m's `Rtc`: feed [`Peer::handle_input`]
//! and the command methods, then drain [`Peer::poll_output`] until `None`; call
//! [`Peer::handle_timeout`] when [`Peer::poll_timeout`] is reached. Runtimes own sockets
//! and time, and make no protocol decisions.

mod challenges;
mod chats;
mod config;
mod connection;
mod contacts;
mod durable;
mod io;
mod lookups;
mod mailbox;
mod registry_link;
mod token_bucket;
mod view;

pub use config::{AcceptPolicy, Backoff, PeerConfig};
pub use contacts::ContactView;
pub use durable::{
    ContactKey, ContactRecord, KeyConflict, Outcome, PeerState, QueuedMessage, StoreOp, WallTime,
};
pub use io::{
    ChatFailure, ChatState, CloseReason, CommandError, ConnectionLost, Event, Input, Output, Target,
};
pub use view::{ChatView, PeerView, RegistryView, RequestView};

use std::collections::{BTreeMap, VecDeque};

use crate::rng::ForwardSecureRng;
use rand_core::{CryptoRng, Rng};

use crate::conn::ConnId;
use crate::identity::Identity;
use crate::nick::Nick;
use crate::time::Instant;
use connection::Conn;
use contacts::ContactStatus;
use mailbox::Mailbox;
use registry_link::RegistryLink;

/// A chat: a conversation with a contact that is connected or trying to be. Who the
/// contact is and what waits for them is the contact's ([`PeerState`]); a chat is only
/// the connection's life.
#[derive(Debug)]
struct Chat {
    state: ChatState,
    conn: Option<ConnId>,
    /// Failed attempts since the last success.
    attempt: u32,
    last_failure: String,
    /// Set once a close is under way: how the chat will be reported as ended.
    closing: Option<CloseReason>,
    /// When a closing handshake or a peer-initiated close gives up waiting.
    close_deadline: Option<Instant>,
}

/// State of a `shutdown` in progress.
#[derive(Debug)]
struct Shutdown {
    deadline: Instant,
    unregister_sent: bool,
}

/// The peer's state machine.
pub struct Peer {
    config: PeerConfig,
    identity: Identity,
    rng: ForwardSecureRng,
    now: Instant,
    /// Wall-clock time at `started` (history timestamps, expiry).
    wall_at_start: WallTime,
    started: Instant,
    /// What must last: contacts and the outbox. Changed only through [`Peer::store`].
    state: PeerState,
    /// Per contact: the outbox's transmission state.
    mailboxes: BTreeMap<Nick, Mailbox>,
    /// Per contact: presence, delivery schedule, refused keys.
    status: BTreeMap<Nick, ContactStatus>,
    next_conn: u64,
    next_decision: u64,
    registry: RegistryLink,
    /// Lookups for inbound handshakes: cached, joined, budgeted.
    inbound_lookups: lookups::InboundLookups,
    /// How many `Challenge`s we may still sign.
    challenges: challenges::ChallengeBudget,
    conns: BTreeMap<ConnId, Conn>,
    chats: BTreeMap<Nick, Chat>,
    /// Pending connection requests, by the id given to the user.
    decisions: BTreeMap<u64, ConnId>,
    outputs: VecDeque<Output>,
    shutdown: Option<Shutdown>,
    done: bool,
}

impl core::fmt::Debug for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Peer")
            .field("nick", &self.identity.nick)
            .field("chats", &self.chats.len())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer with `identity` and nothing stored yet; its randomness derives from `rng`
    /// (drawn once, here). The wall clock starts at zero: runtimes that keep history use
    /// [`Peer::restore`].
    pub fn new(
        config: PeerConfig,
        identity: Identity,
        rng: &mut impl CryptoRng,
        now: Instant,
    ) -> Self {
        Self::restore(
            config,
            identity,
            PeerState::default(),
            rng,
            now,
            WallTime(0),
        )
    }

    /// A peer that carries on from `state`, what a runtime stored of every
    /// [`Output::Store`]; `wall` is the wall-clock time at `now`. Messages in the outbox
    /// are delivered as soon as their contacts can be reached.
    pub fn restore(
        config: PeerConfig,
        identity: Identity,
        state: PeerState,
        rng: &mut impl CryptoRng,
        now: Instant,
        wall: WallTime,
    ) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mailboxes = state
            .outbox
            .iter()
            .map(|(nick, queued)| {
                let queued: Vec<QueuedMessage> = queued.iter().cloned().collect();
                (nick.clone(), Mailbox::restored(&queued))
            })
            .collect();
        let mut peer = Self {
            config,
            identity,
            rng: ForwardSecureRng::from_seed(seed),
            now,
            wall_at_start: wall,
            started: now,
            state,
            mailboxes,
            status: BTreeMap::new(),
            next_conn: 0,
            next_decision: 1,
            registry: RegistryLink::default(),
            inbound_lookups: lookups::InboundLookups::new(now),
            challenges: challenges::ChallengeBudget::new(now),
            conns: BTreeMap::new(),
            chats: BTreeMap::new(),
            decisions: BTreeMap::new(),
            outputs: VecDeque::new(),
            shutdown: None,
            done: false,
        };
        peer.schedule_restored_deliveries();
        peer
    }

    /// What this peer has stored: contacts and the outbox.
    pub fn state(&self) -> &PeerState {
        &self.state
    }

    /// The wall-clock time at `now` (as the runtime reported it at start-up, plus the time
    /// since).
    pub fn wall_time(&self, now: Instant) -> WallTime {
        self.wall_at_start
            .plus(now.saturating_duration_since(self.started))
    }

    /// The port our onion service listens on (advertised to the registry and peers).
    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// The configuration this peer runs with.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The state of the chat with `nick`, if there is one.
    pub fn chat_state(&self, nick: &Nick) -> Option<&ChatState> {
        self.chats.get(nick).map(|c| &c.state)
    }

    /// The fingerprint of the RSA key a chat with `nick` authenticates: the contact's
    /// pinned key (or the fingerprint the user gave for it).
    pub fn chat_fingerprint(&self, nick: &Nick) -> Option<crate::identity::Fingerprint> {
        self.state.contacts.get(nick)?.key.fingerprint()
    }

    /// Nicks of all current chats.
    pub fn chats(&self) -> impl Iterator<Item = &Nick> {
        self.chats.keys()
    }

    /// Fuzzing only: seals `message` on the chat with `nick`, as if this peer had sent it,
    /// so fuzz input reaches the receiver's message handling past the AEAD.
    #[cfg(any(test, fuzzing))]
    pub fn fuzz_seal(&mut self, nick: &Nick, message: &crate::peer_wire::ChannelMessage) -> bool {
        let Some(conn) = self.chats.get(nick).and_then(|c| c.conn) else {
            return false;
        };
        self.seal_on(conn, message)
    }

    /// Whether `shutdown` has completed.
    pub fn is_shut_down(&self) -> bool {
        self.done
    }

    /// Feeds one input from the runtime.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.now = now;
        if self.registry.conn == Some(input_conn(&input)) {
            self.registry_input(input);
        } else {
            self.connection_input(input);
        }
    }

    /// A new inbound connection arrived from our onion service. Returns the id to use for
    /// it, or an error if the runtime should close it at once.
    pub fn accept_incoming(&mut self, now: Instant) -> Result<ConnId, CommandError> {
        self.now = now;
        if self.shutdown.is_some() {
            return Err(CommandError::ShuttingDown);
        }
        let pending = self
            .conns
            .values()
            .filter(|c| c.is_pending_inbound())
            .count();
        if pending >= self.config.max_pending_inbound {
            // Full: the oldest connection that has not authenticated gives way (a stranger
            // holding slots cannot keep real peers out); authenticated requests stay.
            let oldest = self
                .conns
                .iter()
                .filter(|(_, c)| c.is_unauthenticated_inbound())
                .map(|(id, _)| *id)
                .min();
            match oldest {
                Some(conn) => self.drop_conn(conn),
                None => return Err(CommandError::Busy),
            }
        }
        let conn = self.alloc_conn();
        let deadline = now + self.config.hello_timeout;
        self.conns.insert(conn, Conn::inbound(deadline));
        Ok(conn)
    }

    /// The next thing for the runtime to do or the user to see.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest instant at which [`Peer::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(Conn::next_timer);
        let chats = self.chats.values().filter_map(|c| match c.state {
            ChatState::Retrying { at, .. } => Some(at),
            _ => c.close_deadline,
        });
        let shutdown = self.shutdown.as_ref().map(|s| s.deadline);
        conns
            .chain(chats)
            .chain(self.registry.next_timer())
            .chain(self.contact_timers())
            .chain(shutdown)
            .min()
    }

    /// Runs every timer due at `now`. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.registry_timeout();
        self.connection_timeouts();
        self.chat_timeouts();
        self.contact_timeouts();
        if let Some(s) = &self.shutdown
            && now >= s.deadline
        {
            self.finish_shutdown();
        }
    }

    /// Begins a graceful exit: close every chat, deny pending requests, then unregister.
    /// [`Event::ShutdownComplete`] follows.
    pub fn shutdown(&mut self, now: Instant) {
        self.now = now;
        if self.shutdown.is_some() || self.done {
            return;
        }
        self.shutdown = Some(Shutdown {
            deadline: now + self.config.handshake_timeout,
            unregister_sent: false,
        });
        let requests: Vec<u64> = self.decisions.keys().copied().collect();
        for request in requests {
            let _ = self.deny(now, request, "shutting down");
        }
        let nicks: Vec<Nick> = self.chats.keys().cloned().collect();
        for nick in nicks {
            let _ = self.close_chat(now, &nick, "shutting down");
        }
        self.maybe_finish_shutdown();
    }

    fn maybe_finish_shutdown(&mut self) {
        let Some(s) = &mut self.shutdown else { return };
        if !self.chats.is_empty() || s.unregister_sent {
            return;
        }
        s.unregister_sent = true;
        if !self.registry.unregister() {
            self.finish_shutdown();
        } else {
            self.flush_registry();
        }
    }

    fn finish_shutdown(&mut self) {
        if self.done {
            return;
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_conn(conn);
        }
        let nicks: Vec<Nick> = self.chats.keys().cloned().collect();
        for nick in nicks {
            self.end_chat(&nick, CloseReason::Failed(ChatFailure::ShuttingDown));
        }
        if let Some(conn) = self.registry.conn.take() {
            self.outputs.push_back(Output::Close { conn });
        }
        self.registry = RegistryLink::default();
        self.shutdown = None;
        self.done = true;
        self.emit(Event::ShutdownComplete);
    }

    fn alloc_conn(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        conn
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    /// Changes what must last: applied to our own state and queued for the runtime, in
    /// order with everything else it will do.
    fn store(&mut self, op: StoreOp) {
        self.state.apply(&op);
        self.outputs.push_back(Output::Store(op));
    }

    fn transmit(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit { conn, bytes });
    }

    /// A number in 0..=1000 for jitter.
    fn jitter(&mut self) -> u32 {
        self.rng.next_u32() % 1001
    }

    fn fresh_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A message nonce: random, never 0 (which means "not known").
    fn fresh_nonce(&mut self) -> u64 {
        self.rng.next_u64().max(1)
    }
}

fn input_conn(input: &Input<'_>) -> ConnId {
    match input {
        Input::Connected { conn }
        | Input::ConnectFailed { conn, .. }
        | Input::Received { conn, .. }
        | Input::Closed { conn } => *conn,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
