//! Who a user is: the RSA key pair, the onion key, and the certificate binding them.

mod certificate;
mod onion_address;
mod onion_key;
mod rsa_key;
// Under `--cfg fuzzing` signatures and decryption are fakes (rsa_key.rs) and this goes unused.
#[cfg_attr(fuzzing, allow(dead_code))]
mod rsa_private;

pub use certificate::{
    CertificateError, Ed25519Signature, KEY_BINDING_CONTEXT, KeyBindingCertificate,
};
pub use onion_address::{OnionAddress, OnionAddressError};
pub use onion_key::{OnionIdentity, OnionKeyError, TOR_SECRET_KEY_HEADER, verify_onion_signature};
pub use rsa_key::{
    ALLOWED_RSA_BITS, Fingerprint, FingerprintParseError, RsaIdentity, RsaKeyError, RsaPublicKey,
};

use crate::nick::Nick;

/// Everything a peer proves itself with: RSA keys, onion key, nick, and the certificate.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The nick this identity registers under.
    pub nick: Nick,
    /// The RSA key pair (handshake signatures, key transport).
    pub rsa: RsaIdentity,
    /// The onion service key.
    pub onion: OnionIdentity,
    /// The onion key's certificate over `nick` and the RSA public key.
    pub certificate: KeyBindingCertificate,
}

impl Identity {
    /// Assembles an identity whose RSA key is its first (certificate serial 0).
    pub fn new(nick: Nick, rsa: RsaIdentity, onion: OnionIdentity) -> Self {
        Self::with_serial(nick, rsa, onion, 0)
    }

    /// Assembles an identity, issuing certificate number `serial` for its RSA key (one more
    /// for every new RSA key under the same onion key).
    pub fn with_serial(nick: Nick, rsa: RsaIdentity, onion: OnionIdentity, serial: u64) -> Self {
        let certificate =
            KeyBindingCertificate::issue(&onion, nick.clone(), rsa.public().clone(), serial);
        Self {
            nick,
            rsa,
            onion,
            certificate,
        }
    }

    /// The onion address of this identity.
    pub fn address(&self) -> OnionAddress {
        self.onion.address()
    }
}
