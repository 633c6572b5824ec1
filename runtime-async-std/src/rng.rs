//! The runtime's randomness: a forward-secure ChaCha20 generator seeded from the operating
//! system (see `p2pchat_core::rng`).

use p2pchat_core::rng::ForwardSecureRng;
use zeroize::Zeroizing;

/// The operating system could not provide randomness.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(String);

/// A forward-secure cryptographic RNG seeded with 32 bytes from the OS.
pub fn os_rng() -> Result<ForwardSecureRng, RngError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *seed).map_err(|e| RngError(e.to_string()))?;
    Ok(ForwardSecureRng::from_seed(*seed))
}
