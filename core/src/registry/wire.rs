//! Messages between a peer and the registry (docs/PROTOCOL.md, "Registry protocol").

use serde::{Deserialize, Serialize};

use crate::identity::{Ed25519Signature, KeyBindingCertificate, OnionAddress};
use crate::nick::Nick;

/// Most users one `List` page returns.
pub const MAX_PAGE: u16 = 100;
/// Domain separation of the registration signature.
pub const REGISTRATION_CONTEXT: &[u8] = b"p2pchat registry registration v1\0";

/// Peer → registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Register this connection's user.
    Register(Registration),
    /// Look up one nick.
    Lookup {
        /// Echoed in the answer.
        request: u32,
        /// The nick, as typed (validated by the registry).
        nick: String,
    },
    /// One page of the users whose nick starts with `prefix`, in nick order, after `after`.
    List {
        /// Echoed in the answer.
        request: u32,
        /// Case-insensitive nick prefix; empty for everyone.
        prefix: String,
        /// Continue after this nick (the last one of the previous page).
        after: Option<String>,
        /// At most this many users (capped at [`MAX_PAGE`]).
        limit: u16,
    },
    /// Push presence changes (joined/left) to this connection from now on.
    Subscribe,
    /// Remove this connection's registration.
    Unregister,
    /// Heartbeat.
    Ping,
}

/// What a peer registers. Fields are raw so that each defect gets its own typed rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Nickname.
    pub nick: String,
    /// ed25519 public key of the onion address.
    pub onion: [u8; 32],
    /// Port of the onion service.
    pub port: u16,
    /// SPKI DER RSA public key.
    pub rsa_public_key: Vec<u8>,
    /// The onion key's key-binding certificate signature over (onion, nick, RSA key).
    pub certificate_signature: Ed25519Signature,
    /// RSA-PSS-SHA256 over [`registration_signed_bytes`], proving the RSA key is held.
    pub challenge_signature: Vec<u8>,
}

/// One listed user. Everything in it is checkable: the certificate is the onion key's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// nick, onion address and RSA key, signed by the onion key.
    pub certificate: KeyBindingCertificate,
    /// Port of the onion service.
    pub port: u16,
}

impl UserRecord {
    /// The user's nick.
    pub fn nick(&self) -> &Nick {
        &self.certificate.nick
    }
    /// The user's onion address.
    pub fn onion(&self) -> &OnionAddress {
        &self.certificate.onion
    }
}

/// A change in who is online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// A user registered.
    Joined(UserRecord),
    /// A user left (unregistered, disconnected or timed out).
    Left(Nick),
}

/// Registry → peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// Sent first on every connection: the nonce a registration must sign.
    Challenge {
        /// Fresh random nonce.
        nonce: [u8; 32],
    },
    /// The registration succeeded.
    Registered,
    /// The registration was refused.
    RegisterRejected(RegisterError),
    /// Answer to `Lookup`.
    LookupResult {
        /// The request echoed.
        request: u32,
        /// The user, if online.
        record: Option<UserRecord>,
    },
    /// Answer to `List`.
    Page {
        /// The request echoed.
        request: u32,
        /// Users in nick order.
        users: Vec<UserRecord>,
        /// True if more users match after the last one.
        more: bool,
    },
    /// A presence push (after `Subscribe`).
    Presence(Presence),
    /// The registration was removed.
    Unregistered,
    /// Heartbeat answer.
    Pong,
    /// The request was refused; the registry closes the connection after this.
    Error(ServerError),
    /// The registry is shutting down; the connection closes next.
    ShuttingDown,
    /// Answer to a `Lookup` or `List` over the client's request budget: not answered,
    /// try again shortly. The connection (and its registration) stays.
    Busy {
        /// The request echoed.
        request: u32,
    },
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another user holds the nick.
    #[error("that nickname is taken; choose another")]
    NickTaken,
    /// Another user holds the onion address.
    #[error("that onion address is already registered (is another copy of p2pchat running?)")]
    AddressTaken,
    /// Not a valid nick.
    #[error("invalid nickname: use 1 to 32 letters, digits, '_' or '-'")]
    InvalidNick,
    /// Not a valid onion public key.
    #[error("invalid onion address")]
    InvalidOnion,
    /// Not an accepted RSA key.
    #[error("invalid RSA public key (2048 or 3072 bits required)")]
    InvalidKey,
    /// Port 0.
    #[error("invalid port")]
    InvalidPort,
    /// The key-binding certificate does not verify.
    #[error("the key-binding certificate is not signed by the onion address's key")]
    BadCertificate,
    /// The challenge signature does not verify.
    #[error("the registration signature does not verify")]
    BadSignature,
    /// The registry holds as many users as it allows.
    #[error("the registry is full; try again later")]
    RegistryFull,
    /// This connection already registered.
    #[error("this connection is already registered")]
    AlreadyRegistered,
    /// The nick belongs to another key, whose owner was seen recently.
    #[error("that nickname is reserved by another key; choose another")]
    NickReserved,
    /// The onion address belongs to another nick, whose owner was seen recently.
    #[error("that onion address is reserved for another nickname")]
    AddressReserved,
}

/// Why the registry is closing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The peer sent bytes that are not a valid message.
    #[error("the registry could not parse a message")]
    Malformed,
    /// Too many messages too fast.
    #[error("too many requests; slow down")]
    RateLimited,
    /// Too many registration attempts on one connection.
    #[error("too many registration attempts")]
    TooManyAttempts,
    /// `Unregister` without a registration.
    #[error("not registered")]
    NotRegistered,
    /// Nothing received within the heartbeat timeout.
    #[error("heartbeat timeout")]
    Timeout,
    /// The same identity (nick, onion address and key) registered again from another
    /// connection, which replaced this one.
    #[error("this identity registered again from another connection (is p2pchat running twice?)")]
    Replaced,
}

/// The bytes a registration's RSA signature covers:
/// `context ‖ challenge nonce ‖ certificate signed bytes ‖ u16be port`.
pub fn registration_signed_bytes(
    nonce: &[u8; 32],
    certificate: &KeyBindingCertificate,
    port: u16,
) -> Vec<u8> {
    let cert = KeyBindingCertificate::signed_bytes(
        &certificate.onion,
        &certificate.nick,
        &certificate.rsa,
    );
    let mut out = Vec::with_capacity(REGISTRATION_CONTEXT.len() + 32 + cert.len() + 2);
    out.extend_from_slice(REGISTRATION_CONTEXT);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&cert);
    out.extend_from_slice(&port.to_be_bytes());
    out
}
