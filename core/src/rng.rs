//! A forward-secure random generator: ChaCha20 with fast key erasure (Bernstein, "Fast-key-
//! erasure random-number generators", 2017). After every request the generator's key is
//! replaced by output nobody saw, overwriting the old key in place. A snapshot of memory
//! (a core dump, a swapped page, a cold-boot image) then holds only a key that computes
//! what comes next, never what was drawn before: the ephemeral X25519 keys, nonces and
//! blinding factors of earlier chats cannot be recomputed from it.

use core::convert::Infallible;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng, TryCryptoRng, TryRng};
use zeroize::Zeroizing;

/// ChaCha20, re-keyed from its own output after every request.
pub struct ForwardSecureRng {
    inner: ChaCha20Rng,
}

impl ForwardSecureRng {
    /// A generator whose first key is `seed` (draw it from the OS, or from another
    /// cryptographic generator).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = Zeroizing::new(seed);
        Self {
            inner: ChaCha20Rng::from_seed(*seed),
        }
    }

    /// A generator seeded from `rng`.
    pub fn from_rng(rng: &mut impl Rng) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *seed);
        Self::from_seed(*seed)
    }

    /// Replaces the key with 32 bytes of fresh output (the rest of the current block and
    /// the old key are overwritten by the new state).
    fn rekey(&mut self) {
        let mut key = Zeroizing::new([0u8; 32]);
        self.inner.fill_bytes(&mut *key);
        self.inner = ChaCha20Rng::from_seed(*key);
    }

    /// The current key: what a memory snapshot would find.
    #[cfg(test)]
    fn key(&self) -> [u8; 32] {
        self.inner.get_seed()
    }
}

impl TryRng for ForwardSecureRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let value = self.inner.next_u32();
        self.rekey();
        Ok(value)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let value = self.inner.next_u64();
        self.rekey();
        Ok(value)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.inner.fill_bytes(dst);
        self.rekey();
        Ok(())
    }
}

impl TryCryptoRng for ForwardSecureRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_after_a_draw_cannot_recompute_the_draw() {
        let seed = [7u8; 32];
        let mut rng = ForwardSecureRng::from_seed(seed);
        let mut ephemeral = [0u8; 32];
        rng.fill_bytes(&mut ephemeral);
        let snapshot = rng.key();
        assert_ne!(snapshot, seed, "the key was not replaced");
        // Everything the snapshot's key generates, from any position, misses the draw.
        let mut from_snapshot = ChaCha20Rng::from_seed(snapshot);
        let mut stream = vec![0u8; 1 << 16];
        from_snapshot.fill_bytes(&mut stream);
        assert!(!stream.windows(32).any(|w| w == ephemeral));
        // A plain ChaCha20 generator keeps its key: its snapshot recomputes the draw.
        let mut plain = ChaCha20Rng::from_seed(seed);
        let mut drawn = [0u8; 32];
        plain.fill_bytes(&mut drawn);
        let mut replay = ChaCha20Rng::from_seed(plain.get_seed());
        let mut again = [0u8; 32];
        replay.fill_bytes(&mut again);
        assert_eq!(again, drawn);
    }

    #[test]
    fn every_kind_of_request_rekeys_and_output_stays_deterministic_per_seed() {
        let mut a = ForwardSecureRng::from_seed([1; 32]);
        let mut b = ForwardSecureRng::from_seed([1; 32]);
        let mut keys = std::collections::BTreeSet::new();
        for _ in 0..100 {
            assert_eq!(a.next_u32(), b.next_u32());
            assert!(keys.insert(a.key()));
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(keys.insert(a.key()));
            let (mut x, mut y) = ([0u8; 100], [0u8; 100]);
            a.fill_bytes(&mut x);
            b.fill_bytes(&mut y);
            assert_eq!(x, y);
            assert!(keys.insert(a.key()));
        }
    }
}
