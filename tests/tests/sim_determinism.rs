//! The simulator is deterministic: a seed replays a run exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use p2pchat_sim::{FaultLevel, SimConfig, Summary, World};

fn run(seed: u64) -> Summary {
    let mut world = World::new(SimConfig::new(seed, 12, 200, FaultLevel::Heavy), None).unwrap();
    world.run(|_| {})
}

#[test]
fn the_same_seed_twice_gives_the_same_trace_digest() {
    let (a, b) = (run(5), run(5));
    assert_eq!(a.trace_digest, b.trace_digest);
    assert_eq!(a.events, b.events);
    assert_eq!(
        (a.delivered, a.failed, a.lost_in_crash),
        (b.delivered, b.failed, b.lost_in_crash)
    );
    assert_eq!(a.invariant_violations, 0, "{:?}", a.violations);
}

#[test]
fn another_seed_gives_another_trace_digest() {
    assert_ne!(run(5).trace_digest, run(6).trace_digest);
}
