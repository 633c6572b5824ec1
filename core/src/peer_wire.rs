//! Messages peers exchange on a chat connection (see docs/PROTOCOL.md, "Peer protocol").

use serde::{Deserialize, Serialize};

use crate::identity::KeyBindingCertificate;
use crate::nick::Nick;

/// Longest reason text a peer may attach to a denial or close, in bytes.
pub const MAX_REASON_LEN: usize = 200;
/// Longest chat message text, in bytes of UTF-8.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes, on a character boundary.
pub fn clip_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// One frame on a peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// Initiator → responder, first frame.
    Hello(Hello),
    /// Responder → initiator: its half of the handshake, signed.
    Challenge(Challenge),
    /// Initiator → responder: the encrypted secret and the initiator's signature.
    Finish(Finish),
    /// Either side, before keys exist: the handshake is refused.
    Reject(RejectReason),
    /// Everything after the handshake: an AEAD-sealed [`ChannelMessage`].
    Sealed(Sealed),
}

/// The initiator's opening: who it is, who it thinks it is calling, and its fresh values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Fresh random nonce.
    pub nonce: [u8; 32],
    /// Fresh X25519 public key.
    pub ephemeral: [u8; 32],
    /// The initiator's certificate: its onion address, nick and RSA key, signed by the onion key.
    pub certificate: KeyBindingCertificate,
    /// The port the initiator's onion service listens on.
    pub port: u16,
    /// The nick the initiator believes it dialed.
    pub responder: Nick,
    /// The initiator's chat instance (message ids are scoped to it).
    pub instance: u64,
}

/// The signed part of the responder's [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeBody {
    /// Fresh random nonce.
    pub nonce: [u8; 32],
    /// Fresh X25519 public key.
    pub ephemeral: [u8; 32],
    /// The responder's certificate.
    pub certificate: KeyBindingCertificate,
}

/// The responder's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// What is signed.
    pub body: ChallengeBody,
    /// RSA-PSS-SHA256 by the responder's RSA key over the transcript (docs/PROTOCOL.md).
    pub signature: Vec<u8>,
}

/// The initiator's closing handshake message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    /// A fresh 32-byte secret, RSA-OAEP-SHA256 encrypted to the responder's key.
    pub encrypted_secret: Vec<u8>,
    /// RSA-PSS-SHA256 by the initiator's RSA key over the transcript.
    pub signature: Vec<u8>,
}

/// Why a handshake was refused before any keys existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The responder is not the nick the initiator asked for.
    #[error("the peer at that address is not the user you asked for")]
    WrongResponder,
    /// The initiator's nick is not registered, so its key cannot be checked.
    #[error("the peer could not find you in the registry; register first")]
    UnknownInitiator,
    /// The initiator's key differs from the registry record or pinned contact.
    #[error("the peer says your key does not match the registry record for your nick")]
    KeyMismatch,
    /// A certificate or signature did not verify.
    #[error("the peer could not verify your certificate or signature")]
    BadProof,
    /// The responder has too many chats or pending requests.
    #[error("the peer is busy (too many chats); try again later")]
    Busy,
    /// Both sides dialed each other at once; the other connection is kept.
    #[error("both sides connected at once; the other connection is used")]
    Simultaneous,
    /// The responder is shutting down.
    #[error("the peer is shutting down")]
    ShuttingDown,
    /// The peer sent something the protocol does not allow at that point.
    #[error("protocol violation")]
    ProtocolViolation,
    /// The responder's registry lookup did not answer in time.
    #[error("the peer could not reach its registry to check your key")]
    RegistryUnavailable,
    /// The responder's user blocked the initiator.
    #[error("the peer does not accept chats from you")]
    Refused,
}

/// An AEAD-sealed channel message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The sender's per-direction counter; also the nonce.
    pub counter: u64,
    /// ChaCha20-Poly1305 ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

/// What travels inside a [`Sealed`] frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelMessage {
    /// Responder: the user accepted the chat.
    Accept {
        /// The responder's chat instance towards the initiator (its message ids are
        /// scoped to it). Sent only here, sealed, after the initiator proved its key: an
        /// instance in the clear would tell anyone who claims a nick whether that nick is
        /// a contact (a contact's instance is the same in every handshake).
        instance: u64,
    },
    /// Responder: the user denied the chat, with a reason for the initiator.
    Deny {
        /// Free text, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// A chat message.
    Message {
        /// Sender-chosen id, increasing by one per message within the sender's instance.
        id: u64,
        /// The sender's random nonce for it, stored with it ([`crate::peer::QueuedMessage`]).
        nonce: u64,
        /// The text, at most [`MAX_MESSAGE_LEN`] bytes.
        text: String,
    },
    /// Acknowledges every message up to and including `id`.
    Ack {
        /// The highest id received.
        id: u64,
    },
    /// Asks to end the chat.
    Close {
        /// Free text, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// Confirms a [`ChannelMessage::Close`]; the chat is over.
    CloseAck,
    /// Keep-alive request.
    Ping,
    /// Keep-alive answer.
    Pong,
    /// Sent by each side first on an accepted connection: the highest id it stored from
    /// the other's current instance, and that message's nonce. A sender that does not know
    /// that message under that id is running on an older copy of its store (a restored
    /// backup): the ids it reused or would reuse are taken, and its queued messages among
    /// them are failed as uncertain rather than reported delivered on the strength of
    /// another message's acknowledgement.
    Resume {
        /// The highest id stored from the other side's current instance (0 = none).
        stored_upto: u64,
        /// The nonce of that message (0 = none, or not known).
        nonce: u64,
    },
}

/// The highest message id a peer may use or claim: far beyond what a person sends, and
/// low enough that moving past a claimed id can never wrap a counter.
pub const MAX_MESSAGE_ID: u64 = 1 << 53;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clipped_to_the_limit_on_a_character_boundary() {
        assert_eq!(clip_reason("short"), "short");
        let long = "é".repeat(MAX_REASON_LEN);
        let clipped = clip_reason(&long);
        assert!(clipped.len() <= MAX_REASON_LEN && clipped.len() >= MAX_REASON_LEN - 1);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
