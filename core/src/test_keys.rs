//! Pre-generated keys for tests and simulations, so nobody waits for RSA key generation.
//!
//! The PEM files under `core/test-keys/` were generated once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`. They are public: never
//! use them for anything but tests.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::identity::{Identity, OnionIdentity, RsaIdentity};
use crate::nick::Nick;

const RSA_2048: [&str; 12] = [
    include_str!("../test-keys/rsa2048-0.pem"),
    include_str!("../test-keys/rsa2048-1.pem"),
    include_str!("../test-keys/rsa2048-2.pem"),
    include_str!("../test-keys/rsa2048-3.pem"),
    include_str!("../test-keys/rsa2048-4.pem"),
    include_str!("../test-keys/rsa2048-5.pem"),
    include_str!("../test-keys/rsa2048-6.pem"),
    include_str!("../test-keys/rsa2048-7.pem"),
    include_str!("../test-keys/rsa2048-8.pem"),
    include_str!("../test-keys/rsa2048-9.pem"),
    include_str!("../test-keys/rsa2048-10.pem"),
    include_str!("../test-keys/rsa2048-11.pem"),
];

const RSA_3072: &str = include_str!("../test-keys/rsa3072-0.pem");

/// How many distinct 2048-bit test keys exist.
pub const RSA_2048_COUNT: usize = RSA_2048.len();

/// Test RSA-2048 key number `i` (modulo [`RSA_2048_COUNT`]). Each key is parsed once
/// per process: parsing costs about a millisecond, which would dominate fuzz executions.
pub fn rsa(i: usize) -> RsaIdentity {
    static KEYS: std::sync::OnceLock<Vec<RsaIdentity>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| RSA_2048.iter().map(|pem| parse(pem)).collect())[i % RSA_2048_COUNT].clone()
}

/// The one RSA-3072 test key.
pub fn rsa_3072() -> RsaIdentity {
    parse(RSA_3072)
}

fn parse(pem: &str) -> RsaIdentity {
    match RsaIdentity::from_pkcs8_pem(pem) {
        Ok(id) => id,
        // ok: the files are part of the source tree and tested.
        Err(e) => panic!("bundled test key is invalid: {e}"),
    }
}

/// A deterministic onion key for index `i`.
pub fn onion(i: usize) -> OnionIdentity {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed[31] = 0x5e;
    OnionIdentity::from_seed(&seed)
}

/// A complete identity: test RSA key `i`, onion key `i`, and `nick`.
pub fn identity(i: usize, nick: &str) -> Identity {
    let nick = match Nick::new(nick) {
        Ok(n) => n,
        Err(e) => panic!("test nick {nick:?} is invalid: {e}"),
    };
    Identity::new(nick, rsa(i), onion(i))
}

/// A deterministic cryptographic RNG.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}
