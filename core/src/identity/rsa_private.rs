//! The two RSA private-key operations a peer performs — RSASSA-PSS signing and RSAES-OAEP
//! decryption with SHA-256 (RFC 8017 §8.1 and §7.1) — around one base-blinded,
//! fault-checked modular exponentiation.
//!
//! Why not the `rsa` crate's own `pss_sign_with_rng` / `oaep_decrypt_with_rng`: given a
//! generator they blind three ways on every call (the base, the exponent by a random
//! multiple of p−1, and each CRT modulus by a random 129-bit factor), which makes the
//! exponentiations 1.6× longer and costs a modular inversion besides; a private-key
//! operation took 2.8 ms where the same constant-time exponentiation takes 1.5 ms. Three
//! of them in every handshake made RSA three quarters of the simulator's time
//! (docs/BENCHMARKS.md). Here the exponentiation is the crate's constant-time CRT
//! (crypto-bigint), checked against the public key before any result is used (a fault in
//! the CRT cannot leak a prime), and the base is blinded by a random factor as OpenSSL and
//! BoringSSL blind it: the exponentiation never sees the caller's value, so the
//! attacker-chosen OAEP ciphertext of a handshake is unknown to it. docs/SECURITY.md
//! ("RSA private-key operations") states the choice.

use std::sync::{Mutex, PoisonError};

use crypto_bigint::RandomMod;
use crypto_bigint::modular::BoxedMontyForm;
use rand_core::CryptoRng;
use rsa::BoxedUint;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, Zeroizing};

use super::rsa_key::RsaKeyError;

/// Length of a SHA-256 output, which is also the PSS salt's length (docs/PROTOCOL.md §2.2).
const HASH_LEN: usize = 32;

/// RSASSA-PSS-SIGN (RFC 8017 §8.1.1) with SHA-256, MGF1-SHA-256 and a 32-byte salt.
pub(super) fn pss_sign(
    key: &rsa::PrivateKey,
    blinding: &Blinding,
    rng: &mut impl CryptoRng,
    message: &[u8],
) -> Result<Vec<u8>, RsaKeyError> {
    let mut salt = [0u8; HASH_LEN];
    rng.fill_bytes(&mut salt);
    let modulus_bits = usize::try_from(key.n().bit_width()).map_err(|_| RsaKeyError::Operation)?;
    let encoded = emsa_pss_encode(
        &Sha256::digest(message),
        &salt,
        modulus_bits.saturating_sub(1),
    )?;
    let representative = os2ip(&encoded, key)?;
    let signature = blinded_private_op(key, blinding, rng, &representative)?;
    i2osp(&signature, key.size())
}

/// RSAES-OAEP-DECRYPT (RFC 8017 §7.1.2) with SHA-256, MGF1-SHA-256 and an empty label.
///
/// Whatever is wrong with the ciphertext, the answer is the same error, and the decoding
/// takes the same path until it is given: which check failed is never told (Manger's
/// attack needs exactly that).
pub(super) fn oaep_decrypt(
    key: &rsa::PrivateKey,
    blinding: &Blinding,
    rng: &mut impl CryptoRng,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RsaKeyError> {
    let k = key.size();
    if ciphertext.len() != k || k < 2 * HASH_LEN + 2 {
        return Err(RsaKeyError::Operation);
    }
    let c = os2ip(ciphertext, key)?;
    let m = Zeroizing::new(blinded_private_op(key, blinding, rng, &c)?);
    let encoded = Zeroizing::new(i2osp(&m, k)?);
    eme_oaep_decode(&encoded)
}

/// m = c^d mod n, with the base blinded (c·A in, m·B out, where A = r^e and B = r⁻¹ come
/// from `blinding`) and the result checked against the public key (m^e = c) by the crate
/// before it is returned.
fn blinded_private_op(
    key: &rsa::PrivateKey,
    blinding: &Blinding,
    rng: &mut impl CryptoRng,
    c: &BoxedUint,
) -> Result<BoxedUint, RsaKeyError> {
    let params = key.n_params();
    let factors = blinding.next(key, rng)?;
    let blinded =
        Zeroizing::new((BoxedMontyForm::new(c.clone(), params) * &factors.r_to_e).retrieve());
    // m·r, and its Montgomery form, are as secret as m: wiped when dropped.
    let blinded_result = Zeroizing::new(
        rsa::hazmat::rsa_decrypt_and_check(key, None::<&mut NeverUsed>, &blinded)
            .map_err(|_| RsaKeyError::Operation)?,
    );
    let form = Zeroizing::new(BoxedMontyForm::new((*blinded_result).clone(), params));
    let product = Zeroizing::new(&*form * &factors.r_inverse);
    Ok(product.retrieve())
}

/// The generator type named for the crate's call without one (`None` is passed).
type NeverUsed = rand_chacha::ChaCha20Rng;

/// How many operations one random blinding factor serves, squared anew for each, before a
/// fresh one is drawn (OpenSSL's `BN_BLINDING_COUNTER`).
const BLINDING_USES: u32 = 32;

/// A key's base-blinding factors, reused as OpenSSL and BoringSSL reuse them: drawing r and
/// inverting it costs a quarter of a private-key operation, so a fresh r serves
/// [`BLINDING_USES`] operations, each with the previous pair squared (r², r⁻² are again a
/// factor and its inverse, and never one used before). A copy of a key starts with none,
/// so two copies never share factors.
#[derive(Default)]
pub(super) struct Blinding {
    factors: Mutex<Option<Factors>>,
}

impl Clone for Blinding {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// A = r^e and B = r⁻¹ mod n, in Montgomery form.
struct Factors {
    r_to_e: BoxedMontyForm,
    r_inverse: BoxedMontyForm,
    uses: u32,
}

impl Drop for Factors {
    fn drop(&mut self) {
        self.r_to_e.zeroize();
        self.r_inverse.zeroize();
    }
}

impl Blinding {
    /// The factors for the next operation.
    fn next(
        &self,
        key: &rsa::PrivateKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Factors, RsaKeyError> {
        // A panic while the lock was held cannot leave the factors half-updated: they are
        // taken out, and put back only whole.
        let mut slot = self.factors.lock().unwrap_or_else(PoisonError::into_inner);
        let current = match slot.take() {
            Some(previous) if previous.uses < BLINDING_USES => Factors {
                r_to_e: previous.r_to_e.square(),
                r_inverse: previous.r_inverse.square(),
                uses: previous.uses + 1,
            },
            _ => Factors::fresh(key, rng)?,
        };
        let copy = Factors {
            r_to_e: current.r_to_e.clone(),
            r_inverse: current.r_inverse.clone(),
            uses: current.uses,
        };
        *slot = Some(current);
        Ok(copy)
    }
}

impl Factors {
    fn fresh(key: &rsa::PrivateKey, rng: &mut impl CryptoRng) -> Result<Self, RsaKeyError> {
        let n = key.n();
        loop {
            let r = Zeroizing::new(BoxedUint::random_mod_vartime(rng, n));
            // Not invertible only if r shares a prime with n: as likely as guessing the key.
            let Some(inverse) = Option::<BoxedUint>::from(r.invert_mod(n)) else {
                continue;
            };
            let r_to_e = public_op(key, &r)?;
            return Ok(Self {
                r_to_e: BoxedMontyForm::new(r_to_e, key.n_params()),
                r_inverse: BoxedMontyForm::new(inverse, key.n_params()),
                uses: 1,
            });
        }
    }
}

fn public_op(key: &rsa::PrivateKey, x: &BoxedUint) -> Result<BoxedUint, RsaKeyError> {
    rsa::hazmat::rsa_encrypt(key, x).map_err(|_| RsaKeyError::Operation)
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) of a message hash into `em_bits` bits.
fn emsa_pss_encode(
    message_hash: &[u8],
    salt: &[u8; HASH_LEN],
    em_bits: usize,
) -> Result<Vec<u8>, RsaKeyError> {
    let em_len = em_bits.div_ceil(8);
    if em_len < 2 * HASH_LEN + 2 {
        return Err(RsaKeyError::Operation);
    }
    let h = Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(message_hash)
        .chain_update(salt)
        .finalize();
    // DB = PS (zeros) ‖ 0x01 ‖ salt, masked with MGF1(H).
    let db_len = em_len - HASH_LEN - 1;
    let mut em = vec![0u8; em_len];
    let (db, rest) = em.split_at_mut(db_len);
    db[db_len - HASH_LEN - 1] = 0x01;
    db[db_len - HASH_LEN..].copy_from_slice(salt);
    mgf1_xor(db, &h);
    // Clear the bits above em_bits, so the representative is below the modulus.
    db[0] &= 0xff >> (8 * em_len - em_bits);
    rest[..HASH_LEN].copy_from_slice(&h);
    rest[HASH_LEN] = 0xbc;
    Ok(em)
}

/// EME-OAEP decoding (RFC 8017 §7.1.2 step 3) in constant time until the verdict.
fn eme_oaep_decode(em: &[u8]) -> Result<Zeroizing<Vec<u8>>, RsaKeyError> {
    if em.len() < 2 * HASH_LEN + 2 {
        return Err(RsaKeyError::Operation);
    }
    let label_hash = Sha256::digest([]);
    let (first, rest) = em.split_at(1);
    let (masked_seed, masked_db) = rest.split_at(HASH_LEN);
    let mut seed = Zeroizing::new([0u8; HASH_LEN]);
    seed.copy_from_slice(masked_seed);
    mgf1_xor(seed.as_mut(), masked_db);
    let mut db = Zeroizing::new(masked_db.to_vec());
    mgf1_xor(&mut db, seed.as_ref());

    // DB = lHash' ‖ PS (zeros) ‖ 0x01 ‖ M: find the 0x01 without branching on any byte.
    let mut valid = first.ct_eq(&[0]) & db[..HASH_LEN].ct_eq(label_hash.as_slice());
    let mut looking = subtle::Choice::from(1);
    let mut message_start = 0u32;
    for (i, byte) in db.iter().enumerate().skip(HASH_LEN) {
        let is_one = byte.ct_eq(&1);
        let is_zero = byte.ct_eq(&0);
        // i < em.len(), which is at most a few hundred bytes.
        let next = u32::try_from(i + 1).unwrap_or(u32::MAX);
        message_start.conditional_assign(&next, looking & is_one);
        valid &= !looking | is_one | is_zero;
        looking &= !is_one;
    }
    valid &= !looking;
    if !bool::from(valid) {
        return Err(RsaKeyError::Operation);
    }
    let start = usize::try_from(message_start).map_err(|_| RsaKeyError::Operation)?;
    Ok(Zeroizing::new(db[start..].to_vec()))
}

/// XORs `out` with MGF1-SHA-256(seed) (RFC 8017 §B.2.1).
fn mgf1_xor(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(HASH_LEN)) {
        let mask = Sha256::new()
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

/// OS2IP: big-endian bytes of at most the modulus's length to an integer below n.
fn os2ip(bytes: &[u8], key: &rsa::PrivateKey) -> Result<BoxedUint, RsaKeyError> {
    let x = BoxedUint::from_be_slice(bytes, key.n_bits_precision())
        .map_err(|_| RsaKeyError::Operation)?;
    if x >= *key.n().as_ref() {
        return Err(RsaKeyError::Operation);
    }
    Ok(x)
}

/// I2OSP: an integer below n to exactly `len` big-endian bytes.
fn i2osp(x: &BoxedUint, len: usize) -> Result<Vec<u8>, RsaKeyError> {
    let bytes = Zeroizing::new(x.to_be_bytes());
    let (padding, value) = bytes.split_at(bytes.len().saturating_sub(len));
    if padding.iter().any(|b| *b != 0) {
        return Err(RsaKeyError::Operation);
    }
    let mut out = vec![0u8; len - value.len()];
    out.extend_from_slice(value);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng, TryCryptoRng, TryRng};
    use rsa::pkcs8::DecodePrivateKey;

    fn key(pem: &str) -> rsa::PrivateKey {
        rsa::PrivateKey::from_pkcs8_pem(pem).unwrap()
    }

    /// Two 2048-bit keys, the 3072-bit one, and a 2041-bit one (its encoded message is a
    /// byte shorter than the modulus: the one uneven case of RFC 8017's lengths).
    fn keys() -> Vec<rsa::PrivateKey> {
        vec![
            key(include_str!("../../test-keys/rsa2048-0.pem")),
            key(include_str!("../../test-keys/rsa2048-7.pem")),
            key(include_str!("../../test-keys/rsa3072-0.pem")),
            key(include_str!("../../test-keys/rsa2041.pem")),
        ]
    }

    fn random_bytes(rng: &mut ChaCha20Rng, max_len: usize) -> Vec<u8> {
        let len = usize::try_from(rng.next_u32()).unwrap() % (max_len + 1);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        bytes
    }

    #[test]
    fn signatures_are_byte_for_byte_the_rsa_crates_given_the_same_salt() {
        // Both draw the salt first; blinding never changes a result. So with generators
        // in the same state the signatures must be identical.
        let mut messages = ChaCha20Rng::seed_from_u64(1);
        for (k, key) in keys().iter().enumerate() {
            for i in 0..8u64 {
                let message = random_bytes(&mut messages, 300);
                let seed = (k as u64) << 32 | i;
                let ours = pss_sign(
                    key,
                    &Blinding::default(),
                    &mut ChaCha20Rng::seed_from_u64(seed),
                    &message,
                )
                .unwrap();
                let theirs = key
                    .pss_sign_with_rng::<Sha256, _>(&mut ChaCha20Rng::seed_from_u64(seed), &message)
                    .unwrap();
                assert_eq!(ours, theirs, "key {k}, message {i}");
            }
        }
    }

    #[test]
    fn signatures_verify_with_the_verifier_peers_use_and_only_for_their_message() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for key in keys() {
            let public = key.to_public_key();
            let blinding = Blinding::default();
            for _ in 0..6 {
                let message = random_bytes(&mut rng, 1000);
                let signature = pss_sign(&key, &blinding, &mut rng, &message).unwrap();
                assert_eq!(signature.len(), key.size());
                assert!(public.pss_verify::<Sha256>(&message, &signature).is_ok());
                let mut other = message.clone();
                other.push(0);
                assert!(public.pss_verify::<Sha256>(&other, &signature).is_err());
            }
        }
    }

    #[test]
    fn decrypts_what_the_rsa_crate_encrypts_from_empty_to_the_longest_message() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for key in keys() {
            let public = key.to_public_key();
            let blinding = Blinding::default();
            let max = key.size() - 2 * HASH_LEN - 2;
            for len in (0..=max).step_by(17).chain([1, max - 1, max]) {
                let mut plaintext = vec![0u8; len];
                rng.fill_bytes(&mut plaintext);
                let ciphertext = public
                    .oaep_encrypt_with_rng::<Sha256, _>(&mut rng, &plaintext)
                    .unwrap();
                let decrypted = oaep_decrypt(&key, &blinding, &mut rng, &ciphertext).unwrap();
                assert_eq!(*decrypted, plaintext, "length {len}");
            }
        }
    }

    #[test]
    fn altered_or_arbitrary_ciphertexts_are_refused_as_the_rsa_crate_refuses_them() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = &keys()[0];
        let ciphertext = key
            .to_public_key()
            .oaep_encrypt_with_rng::<Sha256, _>(&mut rng, b"a channel secret")
            .unwrap();
        let mut inputs = vec![Vec::new(), vec![0u8; 255], vec![0u8; 257], vec![0xff; 256]];
        for _ in 0..40 {
            let mut altered = ciphertext.clone();
            let at = usize::try_from(rng.next_u32()).unwrap() % altered.len();
            altered[at] ^= 1 << (rng.next_u32() % 8);
            inputs.push(altered);
        }
        for _ in 0..20 {
            let mut arbitrary = vec![0u8; 256];
            rng.fill_bytes(&mut arbitrary);
            arbitrary[0] &= 0x7f;
            inputs.push(arbitrary);
        }
        let blinding = Blinding::default();
        for input in inputs {
            let ours = oaep_decrypt(key, &blinding, &mut rng, &input);
            let theirs = key.oaep_decrypt_with_rng::<Sha256, _>(&mut rng, &input);
            assert_eq!(ours.map(|p| p.to_vec()).ok(), theirs.ok());
        }
    }

    /// Builds EM = 0x00 ‖ maskedSeed ‖ maskedDB from a DB and a seed (RFC 8017 §7.1.1).
    fn masked(db: &[u8], seed: [u8; HASH_LEN]) -> Vec<u8> {
        let mut masked_db = db.to_vec();
        mgf1_xor(&mut masked_db, &seed);
        let mut masked_seed = seed;
        mgf1_xor(&mut masked_seed, &masked_db);
        [&[0u8][..], &masked_seed, &masked_db].concat()
    }

    #[test]
    fn every_malformed_oaep_encoding_gets_the_same_error() {
        let label_hash = Sha256::digest([]);
        let k = 256;
        let well_formed = |message: &[u8]| {
            let mut db = label_hash.to_vec();
            db.resize(k - HASH_LEN - 1 - message.len() - 1, 0);
            db.push(0x01);
            db.extend_from_slice(message);
            db
        };
        let seed = [7u8; HASH_LEN];
        assert_eq!(
            *eme_oaep_decode(&masked(&well_formed(b"hi"), seed)).unwrap(),
            b"hi"
        );
        // No zero padding at all (the longest message) and an empty message.
        let longest = vec![9u8; k - 2 * HASH_LEN - 2];
        assert_eq!(
            *eme_oaep_decode(&masked(&well_formed(&longest), seed)).unwrap(),
            longest
        );
        assert!(
            eme_oaep_decode(&masked(&well_formed(b""), seed))
                .unwrap()
                .is_empty()
        );

        let mut first_byte_set = masked(&well_formed(b"hi"), seed);
        first_byte_set[0] = 1;
        let mut wrong_label = well_formed(b"hi");
        wrong_label[3] ^= 0x20;
        let mut no_separator = well_formed(b"");
        *no_separator.last_mut().unwrap() = 0;
        let mut junk_before_separator = well_formed(b"hi");
        junk_before_separator[HASH_LEN + 5] = 0x02;
        let mut separator_is_two = well_formed(b"hi");
        separator_is_two[k - HASH_LEN - 1 - 3] = 0x02;
        for bad in [
            first_byte_set,
            masked(&wrong_label, seed),
            masked(&no_separator, seed),
            masked(&junk_before_separator, seed),
            masked(&separator_is_two, seed),
        ] {
            assert_eq!(eme_oaep_decode(&bad).unwrap_err(), RsaKeyError::Operation);
        }
    }

    /// Counts what is drawn from the generator it wraps.
    struct Counting(ChaCha20Rng, usize);

    impl TryRng for Counting {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            self.1 += 4;
            Ok(self.0.next_u32())
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            self.1 += 8;
            Ok(self.0.next_u64())
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            self.1 += dst.len();
            self.0.fill_bytes(dst);
            Ok(())
        }
    }
    impl TryCryptoRng for Counting {}

    #[test]
    fn a_blinding_factor_is_drawn_afresh_every_32_operations_and_squared_in_between() {
        let key = &keys()[0];
        let blinding = Blinding::default();
        let mut rng = Counting(ChaCha20Rng::seed_from_u64(5), 0);
        let c = os2ip(&[0x42; 200], key).unwrap();
        let unblinded =
            rsa::hazmat::rsa_decrypt_and_check(key, None::<&mut NeverUsed>, &c).unwrap();
        let mut seen = Vec::new();
        for op in 0..70 {
            let before = rng.1;
            assert_eq!(
                blinded_private_op(key, &blinding, &mut rng, &c).unwrap(),
                unblinded
            );
            let drew = rng.1 - before;
            if op % 32 == 0 {
                assert!(drew >= key.size(), "operation {op} drew {drew} bytes");
            } else {
                assert_eq!(drew, 0, "operation {op}");
            }
            // What the last operation used: a factor and its inverse, never one used before.
            let factors = blinding.factors.lock().unwrap();
            let factors = factors.as_ref().unwrap();
            let r = factors.r_inverse.retrieve().invert_mod(key.n()).unwrap();
            assert_eq!(public_op(key, &r).unwrap(), factors.r_to_e.retrieve());
            let r_to_e = factors.r_to_e.retrieve();
            assert!(!seen.contains(&r_to_e), "operation {op} reused a factor");
            seen.push(r_to_e);
        }
    }

    #[test]
    fn a_copy_of_a_key_never_shares_its_blinding_factors() {
        let key = &keys()[0];
        let mut rng = Counting(ChaCha20Rng::seed_from_u64(6), 0);
        let c = os2ip(&[0x42; 200], key).unwrap();
        let original = Blinding::default();
        blinded_private_op(key, &original, &mut rng, &c).unwrap();
        let copy = original.clone();
        assert!(copy.factors.lock().unwrap().is_none());
        let before = rng.1;
        blinded_private_op(key, &copy, &mut rng, &c).unwrap();
        assert!(rng.1 - before >= key.size(), "the copy drew its own factor");
    }

    #[test]
    fn integers_not_below_the_modulus_are_refused() {
        let key = &keys()[0];
        let n = key.n().to_be_bytes();
        assert_eq!(os2ip(&n, key).unwrap_err(), RsaKeyError::Operation);
        assert_eq!(
            os2ip(&[0xff; 256], key).unwrap_err(),
            RsaKeyError::Operation
        );
        assert_eq!(
            os2ip(&[0xff; 257], key).unwrap_err(),
            RsaKeyError::Operation
        );
    }
}
