//! Many seeds, heavy faults, zero invariant violations. `P2PCHAT_SIM_SEEDS` sets the number
//! of seeds (default 60), `P2PCHAT_SIM_FIRST_SEED` moves the range, `P2PCHAT_SIM_PEERS` and
//! `P2PCHAT_SIM_MESSAGES` the size of each world (default 40 peers × 2,000 messages).
//!
//! The size matters: a responder that lent an ended chat's instance to the next chat gave
//! false delivery receipts on about one seed in sixty at 40 × 2,000 and on none at the
//! 30 × 300 this sweep used to run (docs/SIMULATOR.md, "Sizes that find bugs").

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use p2pchat_sim::{FaultLevel, SimConfig, Summary, World};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(seed: u64, peers: usize, messages: u64) -> Summary {
    let config = SimConfig::new(seed, peers, messages, FaultLevel::Heavy);
    World::new(config, None).unwrap().run(|_| {})
}

fn failure(seed: u64, peers: usize, messages: u64, summary: &Summary) -> String {
    format!(
        "seed {seed}: {:?}\n  replay: p2pchat sim --peers {peers} --messages {messages} --seed {seed} --faults heavy",
        summary.violations
    )
}

#[test]
fn sixty_seeds_of_forty_peers_under_heavy_faults_break_no_invariant() {
    let seeds = env_u64("P2PCHAT_SIM_SEEDS", 60);
    let first = env_u64("P2PCHAT_SIM_FIRST_SEED", 1);
    let peers = env_u64("P2PCHAT_SIM_PEERS", 40) as usize;
    let messages = env_u64("P2PCHAT_SIM_MESSAGES", 2_000);
    let workers = 2;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for seed in (first..first + seeds).filter(|s| s % workers == w) {
                        let summary = run(seed, peers, messages);
                        assert!(summary.faults_injected > 0, "seed {seed} injected no fault");
                        if summary.invariant_violations > 0 {
                            failures.push(failure(seed, peers, messages, &summary));
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

/// The seed on which a user first saw a false delivery receipt (an ended chat's instance
/// lent to the next chat; core test
/// `a_chat_that_ends_during_a_handshake_never_lends_its_instance_to_the_next_chat`).
#[test]
fn seed_90006_no_longer_reports_a_message_delivered_that_was_never_shown() {
    let summary = run(90006, 40, 2_000);
    assert_eq!(
        summary.invariant_violations,
        0,
        "{}",
        failure(90006, 40, 2_000, &summary)
    );
}
