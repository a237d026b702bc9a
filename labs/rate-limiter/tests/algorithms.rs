//! Each algorithm against real Redis, with time on a manual clock: scripted request times,
//! exact admitted counts, the edge burst, the promises, and Retry-After.

mod common;

use common::{T0, app, header, limiter, ratelimit_t};
use lab_rate_limiter::clock::ManualClock;
use lab_rate_limiter::limiter::Algorithm;
use lab_rate_limiter::policy::Policy;
use lab_rate_limiter::scenario::accuracy::{
    burst_accuracy, just_before_window_edge, max_in_any_window, replay,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use reqwest::StatusCode;

/// "6/60s burst=3": windows allow 6 per minute; buckets hold 3 and refill one every 10 s.
const POLICY: &str = "6/60s burst=3";

#[tokio::test]
async fn each_algorithm_admits_exactly_the_burst_plus_what_the_rate_allows() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let http = labkit::http::client();
    // (ms after T0, how many requests at that instant)
    let script = [(0, 10), (10_000, 1), (30_000, 1), (60_000, 5)];
    // Admitted per step. Windows: 6 at once, nothing until the next window (fixed, log) —
    // the sliding counter still weighs the full previous window at t=60 s and admits nothing.
    // Buckets: 3 at once, then one per 10 s of refill (1 at 10 s, 1 of 2 at 30 s), 3 at 60 s.
    let expected = [
        (Algorithm::FixedWindow, [6, 0, 0, 5]),
        (Algorithm::SlidingLog, [6, 0, 0, 5]),
        (Algorithm::SlidingCounter, [6, 0, 0, 0]),
        (Algorithm::TokenBucket, [3, 1, 1, 3]),
        (Algorithm::Gcra, [3, 1, 1, 3]),
        (Algorithm::InMemory, [3, 1, 1, 3]),
    ];
    for (algorithm, want) in expected {
        let clock = ManualClock::at(T0);
        let srv = app(&t.ctx, algorithm, POLICY, &clock).await;
        let mut got = [0; 4];
        for (step, (at, n)) in script.iter().enumerate() {
            clock.set(T0 + at);
            for _ in 0..*n {
                let r = http
                    .get(srv.url("/v1/quote"))
                    .header("x-api-key", "scripted-client")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    header(&r, "ratelimit-policy").as_deref(),
                    Some("\"default\";q=6;w=60"),
                    "{algorithm}"
                );
                let state = header(&r, "ratelimit").expect("RateLimit on every limited response");
                match r.status() {
                    StatusCode::OK => got[step] += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        let retry: u64 = header(&r, "retry-after")
                            .expect("Retry-After on a 429")
                            .parse()
                            .unwrap();
                        assert!(retry >= 1, "{algorithm}: Retry-After {retry}");
                        assert_eq!(
                            ratelimit_t(&state),
                            retry,
                            "{algorithm}: t= names the same moment"
                        );
                        assert!(state.contains(";r=0;"), "{algorithm}: {state}");
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(body["error"]["code"], "rate_limited");
                    }
                    other => panic!("{algorithm}: unexpected {other}"),
                }
            }
        }
        assert_eq!(got, want, "{algorithm}: admitted per step");
        srv.stop().await;
    }
    t.finish().await;
}

#[tokio::test]
async fn fixed_window_edge_burst_admits_twice_the_limit_inside_one_window() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let policy: Policy = "10/60s burst=4".parse().unwrap();
    // The client's t=0 is 3 s before a window boundary: 10 admitted at 0:57, 10 more from 1:00.
    let edge = just_before_window_edge(&policy, 3_000);
    let fixed = limiter(&t.ctx, Algorithm::FixedWindow, "10/60s burst=4").await;
    let row = burst_accuracy(&*fixed, "edge", edge, 4).await.unwrap();
    assert_eq!(
        row.max_in_any_window, 20,
        "twice the limit inside one minute"
    );
    assert!(!row.kept_promise());
    // The same traffic starting on a boundary stays within the limit: the edge is the bug.
    let fixed = limiter(&t.ctx, Algorithm::FixedWindow, "10/60s burst=4").await;
    let aligned = burst_accuracy(&*fixed, "aligned", just_before_window_edge(&policy, 0), 4)
        .await
        .unwrap();
    assert_eq!(aligned.max_in_any_window, 10);
    t.finish().await;
}

/// Seeded random traffic: clumps of requests at random instants over five minutes.
fn clumpy_traffic(seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut times = Vec::new();
    let mut t = 0;
    while t < 300_000 {
        for _ in 0..rng.random_range(1..8) {
            times.push(t);
        }
        t += rng.random_range(0..4_000);
    }
    times
}

#[tokio::test]
async fn sliding_log_never_exceeds_its_limit_in_any_window() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let policy: Policy = "10/60s burst=4".parse().unwrap();
    for start_before_edge in [3_000, 0, 45_000] {
        let log = limiter(&t.ctx, Algorithm::SlidingLog, "10/60s burst=4").await;
        let start = just_before_window_edge(&policy, start_before_edge);
        let row = burst_accuracy(&*log, &format!("edge-{start_before_edge}"), start, 4)
            .await
            .unwrap();
        assert_eq!(row.max_in_any_window, 10, "fills the window, never more");
    }
    for seed in 1..=3 {
        let log = limiter(&t.ctx, Algorithm::SlidingLog, "10/60s burst=4").await;
        let times = clumpy_traffic(seed);
        let decisions = replay(&*log, &format!("clumpy-{seed}"), common::T0, &times)
            .await
            .unwrap();
        let admitted: Vec<u64> = decisions
            .iter()
            .filter(|(_, d)| d.allowed)
            .map(|(t, _)| *t)
            .collect();
        assert!(max_in_any_window(&admitted, 60_000) <= 10, "seed {seed}");
    }
    t.finish().await;
}

#[tokio::test]
async fn bucket_algorithms_never_exceed_burst_plus_rate_times_period() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let policy: Policy = "10/60s burst=4".parse().unwrap();
    let promise = 4 + 10;
    for algorithm in [Algorithm::TokenBucket, Algorithm::Gcra, Algorithm::InMemory] {
        let l = limiter(&t.ctx, algorithm, "10/60s burst=4").await;
        let row = burst_accuracy(&*l, "edge", just_before_window_edge(&policy, 3_000), 4)
            .await
            .unwrap();
        assert!(row.max_in_any_window <= promise, "{algorithm}: {row:?}");
        assert_eq!(row.promised_max as usize, promise);
        for seed in 1..=3 {
            let l = limiter(&t.ctx, algorithm, "10/60s burst=4").await;
            let times = clumpy_traffic(seed);
            let decisions = replay(&*l, &format!("clumpy-{seed}"), common::T0, &times)
                .await
                .unwrap();
            let admitted: Vec<u64> = decisions
                .iter()
                .filter(|(_, d)| d.allowed)
                .map(|(t, _)| *t)
                .collect();
            let most = max_in_any_window(&admitted, 60_000);
            assert!(most <= promise, "{algorithm}, seed {seed}: {most}");
        }
    }
    t.finish().await;
}

#[tokio::test]
async fn a_retry_at_the_advertised_retry_after_is_admitted() {
    let t = labkit::testing::ctx("rate-limiter").await;
    let http = labkit::http::client();
    for algorithm in Algorithm::ALL {
        // Start 7 s into a window so the answer is not just "the next window".
        let clock = ManualClock::at(T0 + 7_000);
        let srv = app(&t.ctx, algorithm, POLICY, &clock).await;
        let get = || {
            http.get(srv.url("/v1/quote"))
                .header("authorization", "Bearer retrying-client")
                .send()
        };
        // t1: spend the allowance until refused.
        let retry_after = loop {
            let r = get().await.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                break header(&r, "retry-after").unwrap().parse::<u64>().unwrap();
            }
            assert_eq!(r.status(), StatusCode::OK);
        };
        // t2: come back exactly when told to.
        clock.advance(retry_after * 1000);
        let r = get().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{algorithm}: retry after {retry_after} s"
        );
        srv.stop().await;
    }
    t.finish().await;
}

#[tokio::test]
async fn retry_after_is_exact_to_the_millisecond() {
    let t = labkit::testing::ctx("rate-limiter").await;
    // Two clients with identical histories: `early` retries 1 ms before the advertised time
    // (refused), `on_time` retries exactly at it (admitted). The limiter's retry time is
    // neither a lie nor padding.
    let history = [
        0, 0, 0, 2_500, 7_000, 7_000, 7_000, 7_000, 7_000, 7_000, 7_000,
    ];
    for algorithm in Algorithm::ALL {
        let l = limiter(&t.ctx, algorithm, POLICY).await;
        let start = T0 + 13_000;
        let mut refused_at = None;
        for &at in &history {
            let early = l.check("early", start + at).await.unwrap();
            let on_time = l.check("on-time", start + at).await.unwrap();
            assert_eq!(early, on_time, "{algorithm}: identical histories");
            if !early.allowed {
                refused_at = Some((start + at, early.retry_after.as_millis() as u64));
                break;
            }
        }
        let (at, wait) = refused_at.expect("the history exhausts every algorithm");
        assert!(wait > 1, "{algorithm}");
        assert!(
            !l.check("early", at + wait - 1).await.unwrap().allowed,
            "{algorithm}: 1 ms early"
        );
        assert!(
            l.check("on-time", at + wait).await.unwrap().allowed,
            "{algorithm}: on time"
        );
    }
    t.finish().await;
}
