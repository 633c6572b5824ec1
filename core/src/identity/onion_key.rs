//! The onion identity: the ed25519 key whose public half *is* the v3 onion address.
//!
//! Tor stores and accepts this key in its *expanded* form (SHA-512 of the seed, first half
//! clamped), so that is the form we hold: it can be read from Tor's `hs_ed25519_secret_key`
//! and handed to `ADD_ONION ED25519-V3:`, and a key that came from Tor never had a seed.

use core::fmt;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::OnionAddress;

/// The 32-byte header of Tor's `hs_ed25519_secret_key` file.
pub const TOR_SECRET_KEY_HEADER: &[u8; 32] = b"== ed25519v1-secret: type0 ==\0\0\0";

/// Why bytes are not an onion secret key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OnionKeyError {
    /// Not Tor's 96-byte file (32-byte header, 64-byte expanded key).
    #[error("not a Tor hs_ed25519_secret_key file (expected a 32-byte header and a 64-byte key)")]
    FileFormat,
    /// The scalar half is not clamped as every Tor-generated key is.
    #[error("the onion secret key is malformed (scalar not clamped)")]
    NotClamped,
}

/// An onion service's ed25519 secret key, in expanded form, with its address.
pub struct OnionIdentity {
    expanded: Zeroizing<[u8; 64]>,
    secret: ExpandedSecretKey,
    public: VerifyingKey,
}

impl OnionIdentity {
    /// Derives the key from a 32-byte seed, as Tor and RFC 8032 do.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut expanded = Zeroizing::new([0u8; 64]);
        expanded.copy_from_slice(&Sha512::digest(seed));
        expanded[0] &= 248;
        expanded[31] &= 127;
        expanded[31] |= 64;
        Self::from_clamped(expanded)
    }

    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(&seed)
    }

    fn from_clamped(expanded: Zeroizing<[u8; 64]>) -> Self {
        let secret = ExpandedSecretKey::from_bytes(&expanded);
        let public = VerifyingKey::from(&secret);
        Self {
            expanded,
            secret,
            public,
        }
    }

    /// Imports the expanded key (64 bytes) as Tor stores it.
    pub fn from_expanded(bytes: &[u8; 64]) -> Result<Self, OnionKeyError> {
        let clamped = bytes[0] & 7 == 0 && bytes[31] & 128 == 0 && bytes[31] & 64 != 0;
        if !clamped {
            return Err(OnionKeyError::NotClamped);
        }
        Ok(Self::from_clamped(Zeroizing::new(*bytes)))
    }

    /// Reads the contents of Tor's `hs_ed25519_secret_key` file.
    pub fn from_tor_secret_key_file(contents: &[u8]) -> Result<Self, OnionKeyError> {
        let (header, key) = contents
            .split_at_checked(TOR_SECRET_KEY_HEADER.len())
            .ok_or(OnionKeyError::FileFormat)?;
        if header != TOR_SECRET_KEY_HEADER {
            return Err(OnionKeyError::FileFormat);
        }
        let key: &[u8; 64] = key.try_into().map_err(|_| OnionKeyError::FileFormat)?;
        Self::from_expanded(key)
    }

    /// The contents of an `hs_ed25519_secret_key` file holding this key.
    pub fn to_tor_secret_key_file(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(96));
        out.extend_from_slice(TOR_SECRET_KEY_HEADER);
        out.extend_from_slice(&self.expanded[..]);
        out
    }

    /// The key argument of Tor's `ADD_ONION`: `ED25519-V3:<base64 of the expanded key>`.
    pub fn add_onion_key_arg(&self) -> Zeroizing<String> {
        let b64 = data_encoding::BASE64.encode(&self.expanded[..]);
        Zeroizing::new(format!("ED25519-V3:{b64}"))
    }

    /// The onion address of this key.
    pub fn address(&self) -> OnionAddress {
        OnionAddress::from_public_key(self.public.to_bytes())
    }

    /// A plain ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        raw_sign::<Sha512>(&self.secret, message, &self.public).to_bytes()
    }
}

impl fmt::Debug for OnionIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionIdentity({})", self.address())
    }
}

impl Clone for OnionIdentity {
    fn clone(&self) -> Self {
        Self::from_clamped(self.expanded.clone())
    }
}

/// Verifies an ed25519 signature made by the key of `address`.
pub fn verify_onion_signature(
    address: &OnionAddress,
    message: &[u8],
    signature: &[u8; 64],
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(address.public_key()) else {
        return false;
    };
    // Fuzzing only: every signature by a valid key verifies (see `RsaPublicKey::verify_pss`).
    #[cfg(fuzzing)]
    return {
        let _ = key;
        signature.iter().any(|b| *b != 0) && !message.is_empty()
    };
    #[cfg(not(fuzzing))]
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_file_round_trip_keeps_the_address() {
        let id = OnionIdentity::from_seed(&[7; 32]);
        let file = id.to_tor_secret_key_file();
        assert_eq!(file.len(), 96);
        let back = OnionIdentity::from_tor_secret_key_file(&file).unwrap();
        assert_eq!(back.address(), id.address());
    }

    #[test]
    fn malformed_tor_files_are_rejected() {
        let id = OnionIdentity::from_seed(&[7; 32]);
        let file = id.to_tor_secret_key_file();
        assert_eq!(
            OnionIdentity::from_tor_secret_key_file(&file[..95]).unwrap_err(),
            OnionKeyError::FileFormat
        );
        let mut bad_header = file.to_vec();
        bad_header[3] ^= 1;
        assert_eq!(
            OnionIdentity::from_tor_secret_key_file(&bad_header).unwrap_err(),
            OnionKeyError::FileFormat
        );
        let mut unclamped = file.to_vec();
        unclamped[32] |= 1;
        assert_eq!(
            OnionIdentity::from_tor_secret_key_file(&unclamped).unwrap_err(),
            OnionKeyError::NotClamped
        );
    }

    #[test]
    fn rfc8032_test_vector_1_gives_the_published_public_key() {
        // RFC 8032 §7.1, TEST 1.
        let seed: [u8; 32] = data_encoding::HEXLOWER
            .decode(b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let id = OnionIdentity::from_seed(&seed);
        assert_eq!(
            data_encoding::HEXLOWER.encode(id.address().public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = id.sign(b"");
        assert_eq!(
            data_encoding::HEXLOWER.encode(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn add_onion_argument_carries_the_expanded_key() {
        let id = OnionIdentity::from_seed(&[1; 32]);
        let arg = id.add_onion_key_arg();
        let b64 = arg.strip_prefix("ED25519-V3:").unwrap();
        let raw = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
        assert_eq!(raw.len(), 64);
        let back = OnionIdentity::from_expanded(&raw.try_into().unwrap()).unwrap();
        assert_eq!(back.address(), id.address());
    }

    #[test]
    fn signatures_verify_against_the_address_only() {
        let a = OnionIdentity::from_seed(&[1; 32]);
        let b = OnionIdentity::from_seed(&[2; 32]);
        let sig = a.sign(b"m");
        assert!(verify_onion_signature(&a.address(), b"m", &sig));
        assert!(!verify_onion_signature(&b.address(), b"m", &sig));
        assert!(!verify_onion_signature(&a.address(), b"n", &sig));
    }
}
