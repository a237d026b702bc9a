//! The five backoff formulas stay inside their documented bounds, draw the same delays for
//! the same seed, and the ported simulator reproduces the AWS post's headline at its own
//! parameters.

use std::time::Duration;

use lab_retry_storm::jitter::{Backoff, Strategy};
use lab_retry_storm::simulator::{SimParams, simulate};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BASE: Duration = Duration::from_millis(5);
const CAP: Duration = Duration::from_millis(2000);

#[test]
fn every_jitter_formula_stays_within_its_documented_bounds() {
    let mut rng = StdRng::seed_from_u64(42);
    for strategy in Strategy::ALL {
        for client in 0..200 {
            let mut b = Backoff::new(strategy, BASE, CAP);
            let mut previous = BASE;
            for n in 1..=30 {
                let (lo, hi) = b.bounds(n, previous);
                let d = b.next(n, &mut rng);
                assert!(
                    lo <= d && d <= hi,
                    "{strategy:?} client {client} retry {n}: {d:?} not in [{lo:?}, {hi:?}]"
                );
                assert!(d <= CAP, "{strategy:?}: {d:?} above the cap");
                previous = d;
            }
        }
    }
}

#[test]
fn exponential_backoff_doubles_from_the_base_until_the_cap() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut b = Backoff::new(Strategy::Exponential, BASE, CAP);
    let waits: Vec<u128> = (1..=10).map(|n| b.next(n, &mut rng).as_millis()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000]);
    let mut none = Backoff::new(Strategy::None, BASE, CAP);
    assert_eq!(none.next(7, &mut rng), Duration::ZERO);
}

#[test]
fn the_same_seed_draws_the_same_delays() {
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        Strategy::ALL
            .iter()
            .flat_map(|s| {
                let mut b = Backoff::new(*s, BASE, CAP);
                (1..=8).map(|n| b.next(n, &mut rng)).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn the_ported_simulator_shows_the_posts_headline_at_its_parameters() {
    // 50 clients, the blog's base 5 ms, cap 2 s, 10 ms ± 2 ms network; 20 runs averaged.
    let run = |s| simulate(50, s, &SimParams::AWS, 20, 7);
    let expo = run(Strategy::Exponential);
    for jittered in [Strategy::Full, Strategy::Equal, Strategy::Decorrelated] {
        let j = run(jittered);
        assert!(
            j.calls < expo.calls * 0.7,
            "{jittered:?}: {j:?} vs {expo:?}"
        );
        assert!(
            j.time_ms < expo.time_ms / 3.0,
            "{jittered:?}: {j:?} vs {expo:?}"
        );
    }
    assert_eq!(
        run(Strategy::Full),
        run(Strategy::Full),
        "seeded: reproducible"
    );
}
