//! Many seeds, heavy faults, zero invariant violations. `P2PCHAT_SIM_SEEDS` raises the
//! number of seeds (default 50), `P2PCHAT_SIM_FIRST_SEED` moves the range.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use p2pchat_sim::{FaultLevel, SimConfig, World};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn fifty_seeds_of_thirty_peers_under_heavy_faults_break_no_invariant() {
    let seeds = env_u64("P2PCHAT_SIM_SEEDS", 50);
    let first = env_u64("P2PCHAT_SIM_FIRST_SEED", 1);
    let workers = 2;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for seed in (first..first + seeds).filter(|s| s % workers == w) {
                        let config = SimConfig::new(seed, 30, 300, FaultLevel::Heavy);
                        let summary = World::new(config, None).unwrap().run(|_| {});
                        assert!(summary.faults_injected > 0, "seed {seed} injected no fault");
                        if summary.invariant_violations > 0 {
                            failures.push(format!(
                                "seed {seed}: {:?}\n  replay: p2pchat sim --peers 30 --messages 300 --seed {seed} --faults heavy",
                                summary.violations
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
