//! Encryption at rest: a passphrase, stretched with Argon2id, unwraps a random 256-bit data
//! key; every sensitive field is sealed with XChaCha20-Poly1305 under that key, with the
//! row it belongs to as associated data (so sealed fields cannot be swapped between rows);
//! rows are found by keyed hashes (HMAC-SHA256 under a key derived from the data key), never
//! by a nick in clear. docs/SECURITY.md says what a thief of the files still learns.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::StoreError;

/// Argon2id cost parameters, stored beside the wrapped key so they can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Random salt.
    pub salt: [u8; 16],
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl KdfParams {
    /// Today's parameters (docs/SECURITY.md): 64 MiB, 3 passes, 1 lane, a fresh salt.
    pub fn fresh() -> Result<Self, StoreError> {
        Ok(Self {
            salt: random()?,
            memory_kib: 64 * 1024,
            passes: 3,
            lanes: 1,
        })
    }

    /// The key-encryption key for `passphrase`.
    pub fn derive(&self, passphrase: &[u8]) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let params = argon2::Params::new(self.memory_kib, self.passes, self.lanes, Some(32))
            .map_err(|e| StoreError::Crypto(format!("bad key-derivation parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, &self.salt, key.as_mut())
            .map_err(|e| StoreError::Crypto(format!("key derivation failed: {e}")))?;
        Ok(key)
    }
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))?;
    Ok(out)
}

/// Seals `plain` under `key` with a random nonce; the nonce leads the output.
pub fn seal_with(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let nonce: [u8; 24] = random()?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
    let mut out = Vec::with_capacity(24 + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_with`] made; `None` if the key is wrong or the bytes were changed.
pub fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 24 {
        return None;
    }
    let (nonce, body) = sealed.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: body, aad })
        .ok()
        .map(Zeroizing::new)
}

/// How the fields of a store are protected.
pub enum Vault {
    /// Created with `--no-passphrase`: fields in clear (every start says so).
    Plain,
    /// Fields sealed under the data key.
    Sealed {
        /// Seals and opens fields.
        data_key: Zeroizing<[u8; 32]>,
        /// Keys the row hashes.
        index_key: Zeroizing<[u8; 32]>,
    },
}

impl Vault {
    /// A vault for `data_key`.
    pub fn sealed(data_key: Zeroizing<[u8; 32]>) -> Self {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(data_key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"p2pchat store index key v1");
        let index_key = Zeroizing::new(mac.finalize().into_bytes().into());
        Self::Sealed {
            data_key,
            index_key,
        }
    }

    /// Whether fields are encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Self::Sealed { .. })
    }

    /// The row key for `name` in `table`: a keyed hash, or the name itself in clear.
    pub fn row_key(&self, table: &str, name: &str) -> Vec<u8> {
        match self {
            Self::Plain => name.as_bytes().to_vec(),
            Self::Sealed { index_key, .. } => {
                let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(index_key.as_ref())
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(table.as_bytes());
                mac.update(&[0]);
                mac.update(name.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Seals a field of row `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::Plain => Ok(plain.to_vec()),
            Self::Sealed { data_key, .. } => seal_with(data_key, aad, plain),
        }
    }

    /// Opens a field of row `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Self::Plain => Some(Zeroizing::new(sealed.to_vec())),
            Self::Sealed { data_key, .. } => open_with(data_key, aad, sealed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_field_opens_only_with_its_key_and_its_row() {
        let key = [7u8; 32];
        let sealed = seal_with(&key, b"row 1", b"secret text").unwrap_or_default();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            open_with(&key, b"row 1", &sealed).map(|p| p.to_vec()),
            Some(b"secret text".to_vec())
        );
        assert!(open_with(&key, b"row 2", &sealed).is_none());
        assert!(open_with(&[8u8; 32], b"row 1", &sealed).is_none());
        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert!(open_with(&key, b"row 1", &tampered).is_none());
    }
}
