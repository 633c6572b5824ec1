//! The simulator's identities. RSA-2048 key generation takes 50–500 ms per key, so a world
//! of a thousand peers would spend minutes on it. Instead every peer takes a key from a
//! fixed pool of 1,024 keys generated once with OpenSSL (`keys/rsa2048-pool.txt`, stored as
//! their primes, about 0.5 ms each to rebuild). Peer `i` gets pool key `i`; only worlds of
//! more than 1,024 peers reuse keys (peer `i` and `i + 1024` share one), which the
//! summary's `shared_rsa_keys` reports. Onion keys (Ed25519) are cheap and always
//! unique, drawn from the world's seed.

use data_encoding::HEXLOWER_PERMISSIVE;
use p2pchat_core::identity::{Identity, OnionIdentity, RsaIdentity};
use p2pchat_core::nick::Nick;
use rand_core::Rng;

const POOL: &str = include_str!("../keys/rsa2048-pool.txt");

/// Number of distinct RSA keys in the pool.
pub const POOL_SIZE: usize = 1024;

/// Why a pool key could not be loaded (the bundled file is broken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulator key pool entry {index} is invalid: {why}")]
pub struct PoolError {
    /// Which entry.
    pub index: usize,
    /// What was wrong.
    pub why: String,
}

/// RSA key number `index % POOL_SIZE` of the pool.
pub fn pool_key(index: usize) -> Result<RsaIdentity, PoolError> {
    let index = index % POOL_SIZE;
    let err = |why: &str| PoolError {
        index,
        why: why.to_owned(),
    };
    let line = POOL
        .lines()
        .filter(|l| !l.starts_with('#'))
        .nth(index)
        .ok_or_else(|| err("missing line"))?;
    let (p, q) = line.split_once(' ').ok_or_else(|| err("no space"))?;
    let p = HEXLOWER_PERMISSIVE
        .decode(p.as_bytes())
        .map_err(|_| err("p is not hex"))?;
    let q = HEXLOWER_PERMISSIVE
        .decode(q.as_bytes())
        .map_err(|_| err("q is not hex"))?;
    RsaIdentity::from_primes(&p, &q).map_err(|e| err(&e.to_string()))
}

/// The nick of peer `index`: two letters spread over the alphabet (so prefix listings
/// return a few users each) and the index.
pub fn nick(index: usize) -> Nick {
    const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
    let a = LETTERS[(index * 7) % 26] as char;
    let b = LETTERS[(index / 26 * 11 + index) % 26] as char;
    match Nick::new(&format!("{a}{b}{index}")) {
        Ok(n) => n,
        // ok: two ASCII letters and digits are always a valid nick of at most 32 bytes.
        Err(e) => unreachable!("generated nick is invalid: {e}"),
    }
}

/// A complete identity for peer `index`: pool RSA key, fresh onion key from `rng`.
pub fn identity(index: usize, rng: &mut impl Rng) -> Result<Identity, PoolError> {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    Ok(Identity::new(
        nick(index),
        pool_key(index)?,
        OnionIdentity::from_seed(&seed),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pool_entry_is_a_distinct_2048_bit_key() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..POOL_SIZE {
            let key = pool_key(i).unwrap();
            assert_eq!(key.public().bits(), 2048, "entry {i}");
            assert!(
                seen.insert(key.public().der().to_vec()),
                "entry {i} repeats"
            );
        }
    }

    #[test]
    fn nicks_are_unique() {
        let nicks: std::collections::BTreeSet<_> = (0..5000).map(nick).collect();
        assert_eq!(nicks.len(), 5000);
    }
}
