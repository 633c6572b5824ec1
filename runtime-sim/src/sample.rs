//! Random draws from the world's one RNG: uniform, exponential, log-normal latencies.

use core::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

use crate::config::Latency;

/// Draws from the world's seeded RNG.
pub(crate) struct Sampler {
    pub(crate) rng: ChaCha20Rng,
}

impl Sampler {
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.rng.next_u64() % n as u64) as usize
    }

    /// Uniform in `[lo, hi]`.
    pub(crate) fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.rng.next_u64() % (span + 1))
    }

    /// Exponentially distributed with the given mean (a Poisson process's gaps).
    pub(crate) fn exponential(&mut self, mean: Duration) -> Duration {
        let u = self.unit();
        mean.mul_f64(-(1.0 - u).ln()).min(mean * 50)
    }

    /// One draw of `latency`, scaled by `factor`.
    pub(crate) fn latency(&mut self, latency: &Latency, factor: u32) -> Duration {
        // Box–Muller: a standard normal from two uniforms.
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        let z = (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos();
        let d = latency.median.mul_f64((latency.sigma * z).exp());
        d.clamp(latency.min, latency.max) * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn latencies_stay_within_bounds_and_centre_on_the_median() {
        let mut s = Sampler {
            rng: ChaCha20Rng::seed_from_u64(1),
        };
        let l = Latency {
            median: Duration::from_millis(100),
            sigma: 0.5,
            min: Duration::from_millis(10),
            max: Duration::from_secs(1),
        };
        let mut draws: Vec<_> = (0..10_001).map(|_| s.latency(&l, 1)).collect();
        assert!(draws.iter().all(|d| *d >= l.min && *d <= l.max));
        draws.sort();
        let median = draws[5000].as_millis();
        assert!((90..=110).contains(&median), "median {median} ms");
    }
}
