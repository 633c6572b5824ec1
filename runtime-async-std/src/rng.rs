//! The runtime's randomness: a ChaCha20 generator seeded from the operating system.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The operating system could not provide randomness.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(String);

/// A cryptographic RNG seeded with 32 bytes from the OS.
pub fn os_rng() -> Result<ChaCha20Rng, RngError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| RngError(e.to_string()))?;
    Ok(ChaCha20Rng::from_seed(seed))
}
