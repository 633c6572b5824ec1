//! The lasting RSA identity: key pair, SPKI DER public key, fingerprint.

use core::fmt;
use rand_core::CryptoRng;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::rsa_private::Blinding;

/// Key sizes we generate and accept from others. Anything else is refused: smaller is weak,
/// larger lets a peer make us spend seconds verifying.
pub const ALLOWED_RSA_BITS: [usize; 2] = [2048, 3072];

/// Why an RSA key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RsaKeyError {
    /// Not a valid SPKI DER / PKCS#8 encoding of an RSA key.
    #[error("not a valid RSA key encoding")]
    Malformed,
    /// A valid key of a size we do not use.
    #[error("RSA key of {0} bits; only 2048 and 3072 bits are accepted")]
    Size(usize),
    /// The public exponent is not 65537.
    #[error("RSA key with a public exponent other than 65537")]
    Exponent,
    /// Key generation or an RSA operation failed.
    #[error("RSA operation failed")]
    Operation,
}

/// An RSA public key with its SPKI DER encoding, which is what is signed, hashed and sent.
#[derive(Clone)]
pub struct RsaPublicKey {
    key: rsa::PublicKey,
    der: Vec<u8>,
}

impl RsaPublicKey {
    /// Parses and checks an SPKI DER public key.
    pub fn from_der(der: &[u8]) -> Result<Self, RsaKeyError> {
        let key = rsa::PublicKey::from_public_key_der(der).map_err(|_| RsaKeyError::Malformed)?;
        // The modulus's own length, not its length in bytes: a 2,041-bit modulus fills 256
        // bytes too, and is not a 2048-bit key (docs/PROTOCOL.md §2.2 says exactly).
        let bits = usize::try_from(key.n().bit_width()).map_err(|_| RsaKeyError::Malformed)?;
        if !ALLOWED_RSA_BITS.contains(&bits) {
            return Err(RsaKeyError::Size(bits));
        }
        // Exactly what every key generator makes (docs/PROTOCOL.md §2.2): a small exponent
        // invites mistakes, a huge one makes each verification expensive.
        if *key.e() != rsa::BoxedUint::from(65_537u64) {
            return Err(RsaKeyError::Exponent);
        }
        // Keep the canonical re-encoding, so equal keys compare equal byte for byte.
        let der = key
            .to_public_key_der()
            .map_err(|_| RsaKeyError::Malformed)?
            .into_vec();
        Ok(Self { key, der })
    }

    /// The SPKI DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }

    /// SHA-256 of the SPKI DER encoding.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(Sha256::digest(&self.der).into())
    }

    /// Verifies an RSA-PSS-SHA256 signature (salt of 32 bytes) over `message`.
    pub fn verify_pss(&self, message: &[u8], signature: &[u8]) -> bool {
        // Fuzzing only: any non-empty signature verifies, so fuzz input reaches the code
        // behind signature checks (as rustls-fuzzing-provider does). Never in a real build.
        #[cfg(fuzzing)]
        return !signature.is_empty() && !message.is_empty();
        #[cfg(not(fuzzing))]
        self.key.pss_verify::<Sha256>(message, signature).is_ok()
    }

    /// RSA-OAEP-SHA256 encryption of a short secret to this key.
    pub fn encrypt_oaep(
        &self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, RsaKeyError> {
        // Fuzzing only: a length byte and the plaintext, padded to the key size.
        #[cfg(fuzzing)]
        {
            let _ = rng;
            let mut out = vec![0u8; self.bits() / 8];
            let n = plaintext.len().min(out.len().saturating_sub(1));
            if let Some(first) = out.first_mut() {
                *first = u8::try_from(n).unwrap_or(0);
            }
            if let (Some(dst), Some(src)) = (out.get_mut(1..1 + n), plaintext.get(..n)) {
                dst.copy_from_slice(src);
            }
            Ok(out)
        }
        #[cfg(not(fuzzing))]
        self.key
            .oaep_encrypt_with_rng::<Sha256, _>(rng, plaintext)
            .map_err(|_| RsaKeyError::Operation)
    }
}

impl PartialEq for RsaPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}
impl Eq for RsaPublicKey {}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RsaPublicKey({} bits, {})",
            self.bits(),
            self.fingerprint()
        )
    }
}

impl Serialize for RsaPublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.der)
    }
}

impl<'de> Deserialize<'de> for RsaPublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let der = <&[u8]>::deserialize(d)?;
        RsaPublicKey::from_der(der).map_err(serde::de::Error::custom)
    }
}

/// The lasting RSA key pair of a user.
#[derive(Clone)]
pub struct RsaIdentity {
    private: rsa::PrivateKey,
    public: RsaPublicKey,
    /// Unused under `--cfg fuzzing`, where the private-key operations are fakes.
    #[cfg_attr(fuzzing, allow(dead_code))]
    blinding: Blinding,
}

impl RsaIdentity {
    /// Generates a new key pair of `bits` (2048 or 3072).
    pub fn generate(rng: &mut impl CryptoRng, bits: usize) -> Result<Self, RsaKeyError> {
        if !ALLOWED_RSA_BITS.contains(&bits) {
            return Err(RsaKeyError::Size(bits));
        }
        let private = rsa::PrivateKey::new(rng, bits).map_err(|_| RsaKeyError::Operation)?;
        Self::from_private(private)
    }

    fn from_private(private: rsa::PrivateKey) -> Result<Self, RsaKeyError> {
        let der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| RsaKeyError::Malformed)?;
        let public = RsaPublicKey::from_der(der.as_bytes())?;
        Ok(Self {
            private,
            public,
            blinding: Blinding::default(),
        })
    }

    /// Rebuilds a key pair from its two primes (big-endian) and the exponent 65537. This is
    /// how a compact pool of pre-generated keys (the simulator's) is loaded.
    pub fn from_primes(p: &[u8], q: &[u8]) -> Result<Self, RsaKeyError> {
        let prime = |bytes: &[u8]| {
            let bits =
                u32::try_from(bytes.len().saturating_mul(8)).map_err(|_| RsaKeyError::Malformed)?;
            rsa::BoxedUint::from_be_slice(bytes, bits).map_err(|_| RsaKeyError::Malformed)
        };
        let private =
            rsa::PrivateKey::from_p_q(prime(p)?, prime(q)?, rsa::BoxedUint::from(65_537u64))
                .map_err(|_| RsaKeyError::Malformed)?;
        Self::from_private(private)
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, RsaKeyError> {
        let private = rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|_| RsaKeyError::Malformed)?;
        Self::from_private(private)
    }

    /// Writes the private key as PKCS#8 PEM. The returned string is wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, RsaKeyError> {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| RsaKeyError::Operation)
    }

    /// The public half.
    pub fn public(&self) -> &RsaPublicKey {
        &self.public
    }

    /// RSA-PSS-SHA256 signature (32-byte salt) over `message`, with salt and blinding from
    /// `rng`.
    pub fn sign_pss(
        &self,
        rng: &mut impl CryptoRng,
        message: &[u8],
    ) -> Result<Vec<u8>, RsaKeyError> {
        // Fuzzing only: a fixed signature of the right size (fast; verification is faked).
        #[cfg(fuzzing)]
        {
            let _ = (rng, message);
            Ok(vec![0x5a; self.public.bits() / 8])
        }
        #[cfg(not(fuzzing))]
        super::rsa_private::pss_sign(&self.private, &self.blinding, rng, message)
    }

    /// RSA-OAEP-SHA256 decryption (blinded with `rng`).
    pub fn decrypt_oaep(
        &self,
        rng: &mut impl CryptoRng,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, RsaKeyError> {
        // Fuzzing only: the inverse of the fake `encrypt_oaep`, so fuzz input chooses the
        // secret.
        #[cfg(fuzzing)]
        {
            let _ = rng;
            let n = usize::from(*ciphertext.first().ok_or(RsaKeyError::Operation)?);
            ciphertext
                .get(1..1 + n)
                .map(|s| Zeroizing::new(s.to_vec()))
                .ok_or(RsaKeyError::Operation)
        }
        #[cfg(not(fuzzing))]
        super::rsa_private::oaep_decrypt(&self.private, &self.blinding, rng, ciphertext)
    }
}

impl fmt::Debug for RsaIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaIdentity({:?})", self.public)
    }
}

/// SHA-256 of a public key's SPKI DER, shown as 16 groups of 4 hex digits for reading aloud.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{:02X}{:02X}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

/// Text that is not a fingerprint (64 hex digits; spaces and colons are ignored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a key fingerprint: expected 64 hex digits (spaces allowed), as /fingerprint shows")]
pub struct FingerprintParseError;

impl core::str::FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: Vec<u8> = s
            .bytes()
            .filter(|b| !matches!(b, b' ' | b':' | b'\t'))
            .collect();
        let bytes = data_encoding::HEXUPPER_PERMISSIVE
            .decode(&hex)
            .map_err(|_| FingerprintParseError)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| FingerprintParseError)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let id = test_keys::rsa(0);
        let pem = id.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = RsaIdentity::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public(), id.public());
    }

    #[test]
    fn only_2048_and_3072_bit_keys_with_exponent_65537_are_accepted() {
        // Made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
        // -pkeyopt rsa_keygen_pubexp:3` (and a 1024-bit key), public halves only.
        let e3 = include_bytes!("../../test-keys/rsa2048-e3.pub.der");
        assert_eq!(
            RsaPublicKey::from_der(e3).unwrap_err(),
            RsaKeyError::Exponent
        );
        let small = include_bytes!("../../test-keys/rsa1024.pub.der");
        assert_eq!(
            RsaPublicKey::from_der(small).unwrap_err(),
            RsaKeyError::Size(1024)
        );
        assert!(RsaPublicKey::from_der(test_keys::rsa(0).public().der()).is_ok());
        assert!(RsaPublicKey::from_der(test_keys::rsa_3072().public().der()).is_ok());
        // A modulus of 2,041 bits is 256 bytes long, and still not a 2048-bit key; nor is
        // it accepted as one's own.
        let odd = include_str!("../../test-keys/rsa2041.pem");
        assert_eq!(
            RsaIdentity::from_pkcs8_pem(odd).unwrap_err(),
            RsaKeyError::Size(2041)
        );
        let odd_public = rsa::PrivateKey::from_pkcs8_pem(odd)
            .unwrap()
            .to_public_key()
            .to_public_key_der()
            .unwrap();
        assert_eq!(
            RsaPublicKey::from_der(odd_public.as_bytes()).unwrap_err(),
            RsaKeyError::Size(2041)
        );
    }

    #[test]
    fn garbage_pem_and_der_are_rejected() {
        assert_eq!(
            RsaIdentity::from_pkcs8_pem("not a key").unwrap_err(),
            RsaKeyError::Malformed
        );
        assert_eq!(
            RsaPublicKey::from_der(&[0x30, 0x03, 1, 2, 3]).unwrap_err(),
            RsaKeyError::Malformed
        );
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message_and_key() {
        let mut rng = test_keys::rng(1);
        let a = test_keys::rsa(0);
        let b = test_keys::rsa(1);
        let sig = a.sign_pss(&mut rng, b"hello").unwrap();
        assert!(a.public().verify_pss(b"hello", &sig));
        assert!(!a.public().verify_pss(b"hellO", &sig));
        assert!(!b.public().verify_pss(b"hello", &sig));
    }

    #[test]
    fn oaep_round_trip() {
        let mut rng = test_keys::rng(2);
        let a = test_keys::rsa(0);
        let ct = a.public().encrypt_oaep(&mut rng, b"secret").unwrap();
        assert_eq!(&a.decrypt_oaep(&mut rng, &ct).unwrap()[..], b"secret");
        assert!(test_keys::rsa(1).decrypt_oaep(&mut rng, &ct).is_err());
    }

    #[test]
    fn a_fingerprint_reads_back_from_its_display_form() {
        let f = test_keys::rsa(0).public().fingerprint();
        assert_eq!(f.to_string().parse::<Fingerprint>(), Ok(f));
        assert_eq!(
            f.to_string()
                .to_lowercase()
                .replace(' ', ":")
                .parse::<Fingerprint>(),
            Ok(f)
        );
        assert!("ABCD".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn fingerprint_is_grouped_hex() {
        let fp = test_keys::rsa(0).public().fingerprint().to_string();
        assert_eq!(fp.len(), 16 * 4 + 15);
        assert!(fp.split(' ').all(|g| g.len() == 4));
    }
}
