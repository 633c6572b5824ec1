//! The mutual, challenge-response peer handshake (docs/PROTOCOL.md, "Handshake").
//!
//! ```text
//! initiator                                   responder
//!   Hello{nonce_i, eph_i, cert_i, port, responder nick, instance_i}  →
//!                          (verify cert_i; the same answer for every claimed nick)
//!   ←  Challenge{nonce_r, eph_r, cert_r, sig_r(th1)}
//!   (verify cert_r, sig_r, then rsa_r == expected key for the nick dialed)
//!   Finish{OAEP_r(secret), sig_i(th2)}  →
//!                          (verify sig_i, decrypt secret; both derive keys; only now
//!                           check rsa_i against the pinned key or the registry)
//!   ←  Sealed(Accept{instance_r} | Deny{reason})   (after the user decides)
//! ```
//! Both signatures cover both nonces, so nothing recorded can be replayed. Each side
//! compares the other's key with the one it expects only after the other proved it holds
//! that key: a key conflict is never recorded on someone's word.

mod initiator;
mod responder;
mod transcript;

pub use initiator::{ExpectedPeer, Initiator};
pub use responder::{Responder, VerifiedHello};
pub use transcript::{
    INITIATOR_SIGN_CONTEXT, RESPONDER_SIGN_CONTEXT, TRANSCRIPT_CONTEXT, initiator_transcript,
    responder_transcript, signed_message,
};

use crate::channel::ChannelCipher;
use crate::identity::Fingerprint;
use crate::nick::Nick;
use crate::peer_wire::RejectReason;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's RSA key is not the one the registry or pinned contact has for its nick.
    #[error(
        "possible impersonation: {nick} presented key {presented}, but the expected key is {expected}"
    )]
    Impersonation {
        /// The nick whose key was checked.
        nick: Nick,
        /// Fingerprint of the expected key.
        expected: Fingerprint,
        /// Fingerprint of the key presented.
        presented: Fingerprint,
    },
    /// The peer's certificate is not signed by its onion key, or names another address/nick.
    #[error("the peer's key-binding certificate is invalid: {0}")]
    BadCertificate(&'static str),
    /// The peer's handshake signature does not verify.
    #[error("the peer's handshake signature is invalid")]
    BadSignature,
    /// The ephemeral key exchange produced no shared secret (a small-order key).
    #[error("the peer sent an invalid ephemeral key")]
    BadEphemeral,
    /// The encrypted secret could not be decrypted with our key.
    #[error("the peer's encrypted secret could not be decrypted")]
    BadSecret,
    /// The peer refused the handshake.
    #[error("the peer refused the connection: {0}")]
    Rejected(RejectReason),
    /// A frame arrived that does not belong at this point.
    #[error("unexpected message during the handshake")]
    Unexpected,
    /// One of our own RSA operations failed.
    #[error("a cryptographic operation failed")]
    Crypto,
}

/// The result of a completed handshake on the responder's side.
#[derive(Debug)]
pub struct Established {
    /// The sealed channel.
    pub cipher: ChannelCipher,
    /// The initiator's chat instance (from its `Hello`).
    pub peer_instance: u64,
}

fn x25519_shared(
    secret: &x25519_dalek::StaticSecret,
    their: [u8; 32],
) -> Result<[u8; 32], HandshakeError> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(their));
    if !shared.was_contributory() {
        return Err(HandshakeError::BadEphemeral);
    }
    Ok(shared.to_bytes())
}

fn random_32(rng: &mut impl rand_core::CryptoRng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests;
