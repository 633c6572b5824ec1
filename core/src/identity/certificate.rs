//! The key-binding certificate: the onion key vouches for an RSA key and a nick.
//!
//! Because a v3 onion address *is* an ed25519 public key, a signature by that key over the
//! RSA key proves the address's owner chose that RSA key. Neither the registry nor anybody
//! else can pair an address with a key its owner did not certify.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{OnionAddress, OnionIdentity, RsaPublicKey, verify_onion_signature};
use crate::nick::Nick;

/// Domain separation for the certificate signature (see docs/PROTOCOL.md).
pub const KEY_BINDING_CONTEXT: &[u8] = b"p2pchat key-binding v1\0";

/// An ed25519 signature, carried as 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519Signature(pub [u8; 64]);

impl core::fmt::Debug for Ed25519Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Ed25519Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Ed25519Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Ed25519Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = <&[u8]>::deserialize(d)?;
        let array: [u8; 64] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"64 bytes"))?;
        Ok(Ed25519Signature(array))
    }
}

/// The onion key's signature binding `(onion, nick, rsa)` together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBindingCertificate {
    /// The onion address whose key signed.
    pub onion: OnionAddress,
    /// The nick the owner uses.
    pub nick: Nick,
    /// The RSA public key the owner uses.
    pub rsa: RsaPublicKey,
    /// Which of the owner's certificates this is: a new RSA key gets the next serial, so
    /// that the registry can tell the newest from an older one replayed.
    pub serial: u64,
    /// ed25519 signature over [`KeyBindingCertificate::signed_bytes`].
    pub signature: Ed25519Signature,
}

/// The certificate's signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key-binding certificate is not signed by the key of its onion address")]
pub struct CertificateError;

impl KeyBindingCertificate {
    /// Signs certificate number `serial` for `nick` and `rsa` with the onion key.
    pub fn issue(onion: &OnionIdentity, nick: Nick, rsa: RsaPublicKey, serial: u64) -> Self {
        let address = onion.address();
        let signature =
            Ed25519Signature(onion.sign(&Self::signed_bytes(&address, &nick, &rsa, serial)));
        Self {
            onion: address,
            nick,
            rsa,
            serial,
            signature,
        }
    }

    /// The exact bytes the onion key signs:
    /// `context ‖ onion_pubkey(32) ‖ u8 len ‖ lowercase nick ‖ u16be len ‖ rsa_spki_der`,
    /// then `u64be serial` unless the serial is 0. Every field before it has its length,
    /// so the two forms never collide; serial 0 is the form certificates had before serials,
    /// so those stay valid as the first of their owner's.
    pub fn signed_bytes(
        onion: &OnionAddress,
        nick: &Nick,
        rsa: &RsaPublicKey,
        serial: u64,
    ) -> Vec<u8> {
        let nick = nick.canonical();
        let der = rsa.der();
        let mut out =
            Vec::with_capacity(KEY_BINDING_CONTEXT.len() + 32 + 1 + nick.len() + 2 + der.len());
        out.extend_from_slice(KEY_BINDING_CONTEXT);
        out.extend_from_slice(onion.public_key());
        // Both lengths fit: nicks are at most 32 bytes, accepted RSA keys well under 64 KiB.
        out.push(nick.len() as u8);
        out.extend_from_slice(nick.as_bytes());
        out.extend_from_slice(&(der.len() as u16).to_be_bytes());
        out.extend_from_slice(der);
        if serial != 0 {
            out.extend_from_slice(&serial.to_be_bytes());
        }
        out
    }

    /// Checks the signature against the onion address's own key.
    pub fn verify(&self) -> Result<(), CertificateError> {
        let message = Self::signed_bytes(&self.onion, &self.nick, &self.rsa, self.serial);
        if verify_onion_signature(&self.onion, &message, &self.signature.0) {
            Ok(())
        } else {
            Err(CertificateError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys;

    fn nick(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    #[test]
    fn an_issued_certificate_verifies() {
        let onion = OnionIdentity::from_seed(&[3; 32]);
        let cert = KeyBindingCertificate::issue(
            &onion,
            nick("alice"),
            test_keys::rsa(0).public().clone(),
            0,
        );
        assert_eq!(cert.verify(), Ok(()));
    }

    #[test]
    fn swapping_the_rsa_key_nick_or_onion_breaks_it() {
        let onion = OnionIdentity::from_seed(&[3; 32]);
        let other = OnionIdentity::from_seed(&[4; 32]);
        let cert = KeyBindingCertificate::issue(
            &onion,
            nick("alice"),
            test_keys::rsa(0).public().clone(),
            0,
        );

        let mut c = cert.clone();
        c.rsa = test_keys::rsa(1).public().clone();
        assert_eq!(c.verify(), Err(CertificateError));

        let mut c = cert.clone();
        c.nick = nick("mallory");
        assert_eq!(c.verify(), Err(CertificateError));

        let mut c = cert.clone();
        c.onion = other.address();
        assert_eq!(c.verify(), Err(CertificateError));

        let mut c = cert.clone();
        c.serial = 1;
        assert_eq!(c.verify(), Err(CertificateError));
    }

    #[test]
    fn a_certificate_signs_its_serial_and_serial_zero_is_the_form_without_one() {
        let onion = OnionIdentity::from_seed(&[3; 32]);
        let rsa = test_keys::rsa(0).public().clone();
        let first = KeyBindingCertificate::issue(&onion, nick("alice"), rsa.clone(), 0);
        let later = KeyBindingCertificate::issue(&onion, nick("alice"), rsa.clone(), 7);
        assert_eq!(later.verify(), Ok(()));
        let mut forged = later.clone();
        forged.serial = 8;
        assert_eq!(forged.verify(), Err(CertificateError));
        let without = KeyBindingCertificate::signed_bytes(&first.onion, &first.nick, &rsa, 0);
        let with = KeyBindingCertificate::signed_bytes(&first.onion, &first.nick, &rsa, 7);
        assert_eq!(with.len(), without.len() + 8);
        assert!(with.starts_with(&without));
    }

    #[test]
    fn an_invalid_curve_point_as_onion_fails_cleanly() {
        let onion = OnionIdentity::from_seed(&[3; 32]);
        let mut cert = KeyBindingCertificate::issue(
            &onion,
            nick("alice"),
            test_keys::rsa(0).public().clone(),
            0,
        );
        cert.onion = OnionAddress::from_public_key([0xff; 32]);
        assert_eq!(cert.verify(), Err(CertificateError));
    }
}
