//! Messages between a peer and the registry (docs/PROTOCOL.md, "Registry protocol").

use serde::{Deserialize, Serialize};

use rand_core::CryptoRng;

use crate::identity::{
    Ed25519Signature, Identity, KeyBindingCertificate, OnionAddress, RsaKeyError,
};
use crate::nick::Nick;

/// Most users one `List` page returns.
pub const MAX_PAGE: u16 = 100;
/// Domain separation of the registration signatures.
pub const REGISTRATION_CONTEXT: &[u8] = b"p2pchat registry registration v2\0";
/// Prefixed to [`registration_signed_bytes`] for the onion key's signature, so that it is
/// never the same message as the RSA key's.
pub const ONION_PROOF_CONTEXT: &[u8] = b"p2pchat registry onion proof v1\0";

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
    /// The certificate's serial.
    pub certificate_serial: u64,
    /// The onion key's key-binding certificate signature over (onion, nick, RSA key,
    /// serial).
    pub certificate_signature: Ed25519Signature,
    /// RSA-PSS-SHA256 over [`registration_signed_bytes`], proving the RSA key is held.
    pub challenge_signature: Vec<u8>,
    /// The onion key's signature over [`ONION_PROOF_CONTEXT`] ‖
    /// [`registration_signed_bytes`]: the onion key is held now, not only when the
    /// certificate was issued.
    pub onion_signature: Ed25519Signature,
}

impl Registration {
    /// `identity`'s registration answering `nonce` from the registry at `registry` (`None`
    /// for one reached without Tor), signed by its RSA key and its onion key.
    pub fn signed(
        identity: &Identity,
        registry: Option<&OnionAddress>,
        nonce: &[u8; 32],
        port: u16,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, RsaKeyError> {
        let signed = registration_signed_bytes(registry, nonce, &identity.certificate, port);
        Ok(Self {
            nick: identity.nick.as_str().to_owned(),
            onion: *identity.address().public_key(),
            port,
            rsa_public_key: identity.rsa.public().der().to_vec(),
            certificate_serial: identity.certificate.serial,
            certificate_signature: identity.certificate.signature,
            challenge_signature: identity.rsa.sign_pss(rng, &signed)?,
            onion_signature: Ed25519Signature(identity.onion.sign(&onion_proof_bytes(&signed))),
        })
    }
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
    /// Changes were missed (this connection did not read fast enough, or too much changed
    /// at once): what it knows of who is online may be stale. Nothing before it in the
    /// same frame.
    Resync,
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
    /// Presence pushed after `Subscribe`: each nick that changed since the last push, at
    /// most once, with its state now (or a lone `Resync`).
    Presence(Vec<Presence>),
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
    /// The registry takes only so many registrations a second, from everyone together.
    #[error("the registry is busy; trying again shortly")]
    Busy,
    /// The onion key's signature of this registration does not verify.
    #[error("the registration is not signed by the onion address's key")]
    BadOnionSignature,
    /// The nick's owner moved to a newer certificate (a new RSA key): this older one is
    /// not taken back.
    #[error(
        "this certificate is older than the one the registry knows for this nickname; use your current key"
    )]
    StaleCertificate,
    /// The RSA key already holds as many nicks at this registry as it allows.
    #[error("this key already holds as many nicknames as this registry allows")]
    KeyLimit,
    /// The registry's operator revoked this onion address (its key leaked): it can never
    /// register again here.
    #[error(
        "this registry's operator revoked this onion address; make a new identity (a new onion key)"
    )]
    AddressRevoked,
    /// The registry's disk takes no writes: it cannot record a new binding now.
    #[error("the registry cannot record new registrations right now (its disk is full)")]
    StoreUnavailable,
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

/// The bytes a registration's signatures cover:
/// `context ‖ registry ‖ challenge nonce ‖ certificate signed bytes ‖ u16be port`, where
/// `registry` is the public key of the onion address the client dialled (32 zero bytes
/// for a registry reached without Tor, on loopback). Naming the registry means a hostile
/// registry cannot pass another registry's challenge on and use the answer there.
pub fn registration_signed_bytes(
    registry: Option<&OnionAddress>,
    nonce: &[u8; 32],
    certificate: &KeyBindingCertificate,
    port: u16,
) -> Vec<u8> {
    let cert = KeyBindingCertificate::signed_bytes(
        &certificate.onion,
        &certificate.nick,
        &certificate.rsa,
        certificate.serial,
    );
    let mut out = Vec::with_capacity(REGISTRATION_CONTEXT.len() + 64 + cert.len() + 2);
    out.extend_from_slice(REGISTRATION_CONTEXT);
    out.extend_from_slice(registry.map_or(&[0u8; 32], |r| r.public_key()));
    out.extend_from_slice(nonce);
    out.extend_from_slice(&cert);
    out.extend_from_slice(&port.to_be_bytes());
    out
}

/// What the onion key signs in a registration: [`ONION_PROOF_CONTEXT`] ‖ `signed`.
pub fn onion_proof_bytes(signed: &[u8]) -> Vec<u8> {
    [ONION_PROOF_CONTEXT, signed].concat()
}
