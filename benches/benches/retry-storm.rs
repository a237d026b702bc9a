//! The circuit breaker's price on the happy path: one closed-state check (acquire a permit,
//! report a success into resilience4j's window of 100) against one `/work` request through
//! a real HTTP hop to the dependency, with and without the breaker.
//!
//! No state grows: the breaker's window holds its last 100 outcomes, and the dependency
//! keeps nothing. Run with `cargo bench -p benches --bench retry-storm`. The storm itself
//! (amplification, recovery time) comes from `lab run retry-storm`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use benches::Bench;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_retry_storm::app::{App, Resilience, router};
use lab_retry_storm::breaker::{Breaker, BreakerConfig};
use lab_retry_storm::clock::Clock;
use lab_retry_storm::dependency::{Faults, RunningDependency};
use labkit::Scale;

const GROUP: &str = "retry-storm";

/// A healthy dependency that answers at once (no simulated work): the hop is all there is.
const INSTANT: Faults = Faults {
    capacity: 64,
    latency_ms: 0,
    error_rate: 0.0,
};

fn service(breaker: bool) -> Resilience {
    Resilience {
        breaker: breaker.then_some(BreakerConfig::RESILIENCE4J),
        ..Resilience::pass_through(Duration::from_secs(5))
    }
}

fn bench(c: &mut Criterion) {
    // No database: the throwaway backend is only what the summary describes.
    let b = Bench::throwaway("retry-storm", Scale::Smoke);
    let (dep, with, without) = b.block_on(async {
        let dep = RunningDependency::spawn(INSTANT, 42)
            .await
            .expect("dependency");
        let spawn = |breaker| {
            let app = App::new("bench", service(breaker), dep.call_url(), Clock::system());
            labkit::http::spawn(router(Arc::new(app)))
        };
        let with = spawn(true).await.expect("service with breaker");
        let without = spawn(false).await.expect("service without breaker");
        (dep, with, without)
    });
    let http = labkit::http::client();
    let (with_url, without_url) = (with.url("/work"), without.url("/work"));
    let get = |url: String| {
        let http = http.clone();
        async move {
            let res = http.get(&url).send().await.expect("request");
            assert_eq!(res.status(), 200);
            res.bytes().await.expect("body");
        }
    };

    // A closed breaker whose window is already full (the steady state).
    let breaker = Breaker::new(BreakerConfig::RESILIENCE4J, Clock::system());
    for _ in 0..100 {
        breaker.try_acquire().expect("closed").success();
    }

    let mut g = c.benchmark_group(GROUP);
    g.bench_function("breaker_check_closed", |bench| {
        bench.iter(|| black_box(&breaker).try_acquire().expect("closed").success())
    });
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    g.bench_function("work_with_breaker", |bench| {
        bench.to_async(&b.rt).iter(|| get(with_url.clone()))
    });
    g.bench_function("work_without_breaker", |bench| {
        bench.to_async(&b.rt).iter(|| get(without_url.clone()))
    });
    g.finish();

    b.summary(
        GROUP,
        "a dependency that answers at once, one client over loopback HTTP",
    )
    .label(
        "breaker_check_closed",
        "a closed breaker: acquire a permit, report a success",
    )
    .label(
        "work_with_breaker",
        "GET /work through the breaker and one HTTP hop",
    )
    .label(
        "work_without_breaker",
        "GET /work, one HTTP hop, no breaker",
    )
    .when(&["breaker_check_closed", "work_without_breaker"], |e| {
        format!(
            "a closed breaker's check costs {} = {:.3} % of one /work request through a \
                 real hop ({})",
            e[0],
            100.0 * e[0].ns / e[1].ns,
            e[1]
        )
    })
    .when(&["work_with_breaker", "work_without_breaker"], |e| {
        format!(
            "/work with the breaker {} vs without {} ({:.2}×): the breaker is not what \
                 makes a call slow",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    b.block_on(async {
        with.stop().await;
        without.stop().await;
        dep.server.stop().await;
    });
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
