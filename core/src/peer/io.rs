//! What goes in and out of a [`crate::peer::Peer`].

use crate::channel::ChannelError;
use crate::conn::ConnId;
use crate::frame::FrameError;
use crate::handshake::HandshakeError;
use crate::identity::{Fingerprint, OnionAddress};
use crate::nick::Nick;
use crate::registry::{Presence, RegisterError, ServerError, UserRecord};
use crate::time::Instant;

/// Something that happened on a connection the runtime owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// An outbound connection the core asked for is open.
    Connected {
        /// Which.
        conn: ConnId,
    },
    /// An outbound connection could not be opened.
    ConnectFailed {
        /// Which.
        conn: ConnId,
        /// What the transport said, for the user.
        reason: String,
    },
    /// Bytes arrived.
    Received {
        /// On which connection.
        conn: ConnId,
        /// Any number of bytes, split anywhere.
        bytes: &'a [u8],
    },
    /// The connection closed (by the other side or the network).
    Closed {
        /// Which.
        conn: ConnId,
    },
}

/// Where the runtime should connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The registry the runtime is configured with.
    Registry,
    /// A peer's onion service.
    Peer {
        /// Its address (always handed to the proxy as a name, never resolved locally).
        onion: OnionAddress,
        /// Its port.
        port: u16,
    },
}

/// What the core asks of its runtime, or tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a connection; report [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect {
        /// The id the core gives it.
        conn: ConnId,
        /// Where to.
        target: Target,
    },
    /// Send bytes.
    Transmit {
        /// On which connection.
        conn: ConnId,
        /// Whole frames.
        bytes: Vec<u8>,
    },
    /// Close a connection after sending what was queued on it.
    Close {
        /// Which.
        conn: ConnId,
    },
    /// Something for the user.
    Event(Event),
    /// Store this durably before carrying out any later output.
    Store(super::StoreOp),
}

/// A user-visible connection state of a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatState {
    /// Asking the registry where the peer is.
    LookingUp,
    /// Opening a connection and authenticating.
    Connecting,
    /// Authenticated; waiting for the peer's user to accept.
    AwaitingAcceptance,
    /// Messages flow.
    Connected,
    /// The connection was lost; the next attempt is at `at`.
    Retrying {
        /// When the next attempt starts.
        at: Instant,
        /// Which attempt that will be (1-based).
        attempt: u32,
    },
    /// Closing handshake in progress.
    Closing,
}

/// Why a chat ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed it (the reason we gave).
    ByUs(String),
    /// The peer closed it (with its reason).
    ByPeer(String),
    /// The peer's user denied the request.
    Denied(String),
    /// It failed for good (after retries, or on an authentication failure).
    Failed(ChatFailure),
}

/// Why a chat failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatFailure {
    /// The nick is not registered.
    #[error("{0} is not online (not in the registry)")]
    NotOnline(Nick),
    /// Every reconnection attempt failed.
    #[error("the peer could not be reached after {attempts} attempts: {last}")]
    Unreachable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The peer could not be authenticated.
    #[error("{0}")]
    Handshake(HandshakeError),
    /// The registry record's certificate or the pinned key did not match.
    #[error("possible impersonation: the registry's record for {nick} does not match {why}")]
    BadRecord {
        /// Whose record.
        nick: Nick,
        /// What it did not match.
        why: &'static str,
    },
    /// We are shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why one connection of a chat was lost (the chat itself may retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionLost {
    /// The transport could not open the connection.
    #[error("could not connect: {0}")]
    ConnectFailed(String),
    /// The connection closed.
    #[error("the connection closed")]
    Closed,
    /// Nothing arrived within the idle timeout, or the handshake did not finish in time.
    #[error("the connection timed out")]
    Timeout,
    /// The peer sent an unreadable frame.
    #[error("the peer sent an unreadable frame: {0}")]
    Frame(FrameError),
    /// A sealed frame was refused (replayed, reordered, tampered).
    #[error("{0}")]
    Channel(ChannelError),
    /// The handshake failed.
    #[error("{0}")]
    Handshake(HandshakeError),
    /// The peer broke the protocol.
    #[error("the peer broke the protocol: {0}")]
    Protocol(&'static str),
    /// Both sides connected at once and the other connection was kept.
    #[error("a simultaneous connection replaced this one")]
    Superseded,
}

/// Something for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We are registered and listed.
    Registered,
    /// The registry refused our registration.
    RegistrationFailed(RegisterError),
    /// We unregistered (during shutdown).
    Unregistered,
    /// The registry connection failed or dropped; `retry_at` if we will reconnect.
    RegistryLost {
        /// What happened.
        reason: String,
        /// When we reconnect, if we do.
        retry_at: Option<Instant>,
    },
    /// The registry closed our connection with an error.
    RegistryError(ServerError),
    /// A page of online users (answer to `refresh_users`).
    Users {
        /// The users, in nick order, certificates verified.
        users: Vec<UserRecord>,
        /// More users match after these.
        more: bool,
    },
    /// Someone came online or left.
    Presence(Presence),
    /// An authenticated peer asks to chat; answer with `accept` or `deny`.
    ConnectionRequest {
        /// Pass to `accept`/`deny`.
        request: u64,
        /// Who (checked against the registry or pinned key).
        nick: Nick,
        /// Their onion address.
        onion: OnionAddress,
        /// Their key's fingerprint, to compare out of band.
        fingerprint: Fingerprint,
    },
    /// A connection request went away before the user decided: the peer gave up or
    /// closed, the decision timed out, or a newer request from the same nick replaced it.
    /// `accept` or `deny` of it now fails.
    RequestGone {
        /// The request's id, as in [`Event::ConnectionRequest`].
        request: u64,
        /// Who had asked.
        nick: Nick,
    },
    /// A chat's connection state changed.
    ChatState {
        /// Whose chat.
        nick: Nick,
        /// The new state.
        state: ChatState,
    },
    /// A chat connection was lost; a `ChatState` event follows with what happens next.
    ConnectionLost {
        /// Whose chat.
        nick: Nick,
        /// Why.
        reason: ConnectionLost,
    },
    /// A message arrived.
    Message {
        /// From whom.
        nick: Nick,
        /// The sender's id for it.
        id: u64,
        /// The text.
        text: String,
    },
    /// Our message went out on a connection for the first time (it is not yet
    /// acknowledged).
    Sent {
        /// To whom.
        nick: Nick,
        /// Which message.
        id: u64,
    },
    /// The peer acknowledged our message.
    Delivered {
        /// To whom.
        nick: Nick,
        /// Which message.
        id: u64,
    },
    /// Our message will not be delivered.
    Failed {
        /// To whom.
        nick: Nick,
        /// Which message.
        id: u64,
        /// Why.
        reason: String,
    },
    /// The chat ended; no more events for it.
    ChatClosed {
        /// Whose chat.
        nick: Nick,
        /// Why.
        reason: CloseReason,
    },
    /// An incoming connection was refused (for example a possible impersonation).
    IncomingRejected {
        /// The nick it claimed, if it got that far.
        nick: Option<Nick>,
        /// Why.
        reason: HandshakeError,
    },
    /// Possible impersonation: a contact presented another key than the one pinned for
    /// it. Nothing is sent to that key, and the contact's chats and deliveries wait, until
    /// the user runs `verify` (with the fingerprint compared out of band) or `trust`.
    KeyChanged {
        /// Whose key.
        nick: Nick,
        /// The fingerprint pinned.
        pinned: Fingerprint,
        /// The fingerprint presented.
        presented: Fingerprint,
    },
    /// The contact has stored more of our messages than this store ever numbered: it is an
    /// older copy of itself (a restored backup). Our ids towards the contact now continue
    /// after `stored_upto`; queued messages under ids it already had were failed.
    StoreBehindContact {
        /// Whose record is ahead of ours.
        nick: Nick,
        /// The highest of our ids the contact stored.
        stored_upto: u64,
    },
    /// `shutdown` finished: chats closed, registration removed.
    ShutdownComplete,
}

/// A command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No chat with that nick.
    #[error("there is no chat with {0}")]
    NoChat(Nick),
    /// A chat with that nick exists already.
    #[error("a chat with {0} is already open")]
    ChatExists(Nick),
    /// That is us.
    #[error("you cannot chat with yourself")]
    OwnNick,
    /// The message is longer than the limit.
    #[error("message of {len} bytes is longer than the {max}-byte limit; split it")]
    MessageTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many messages are waiting for acknowledgement.
    #[error("{0} has not acknowledged {1} messages; wait for the chat to reconnect")]
    OutboxFull(Nick, usize),
    /// Too many chats.
    #[error("too many chats open (limit {0}); close one first")]
    TooManyChats(usize),
    /// The request id is unknown (answered already, or expired).
    #[error("no pending connection request {0}")]
    NoRequest(u64),
    /// The chat is closing.
    #[error("the chat with {0} is closing")]
    Closing(Nick),
    /// We are shutting down.
    #[error("p2pchat is shutting down")]
    ShuttingDown,
    /// Too many inbound connections are pending.
    #[error("too many pending incoming connections")]
    Busy,
    /// The nick is blocked.
    #[error("{0} is blocked; /unblock {0} first")]
    Blocked(Nick),
    /// `trust` of a contact whose key did not change: there is nothing to settle.
    #[error("{0}'s key has not changed; nothing was changed")]
    KeyNotChanged(Nick),
    /// No such contact.
    #[error("{0} is not a contact")]
    NoContact(Nick),
    /// `verify` or `trust` was given a fingerprint that is neither the contact's pinned key
    /// nor the one presented in its place.
    #[error(
        "that fingerprint is neither {0}'s pinned key nor the one presented; nothing was changed"
    )]
    FingerprintMismatch(Nick),
    /// `cancel` of a message that is not queued.
    #[error("no message {1} to {0} is waiting (it was delivered, failed or withdrawn)")]
    NotQueued(Nick, u64),
    /// Too many contacts.
    #[error("too many contacts (limit {0})")]
    TooManyContacts(usize),
}
