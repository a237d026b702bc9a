//! The circuit breaker's price on the happy path: one closed-state check (acquire a permit,
//! report a success into resilience4j's window of 100) against one `/work` request through
//! a real HTTP hop to the dependency, with and without the breaker.
//!
//! `cargo bench -p benches --bench retry-storm`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lab_retry_storm::app::{App, Resilience, router};
use lab_retry_storm::breaker::{Breaker, BreakerConfig};
use lab_retry_storm::clock::Clock;
use lab_retry_storm::dependency::{Faults, RunningDependency};

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
    let rt = benches::runtime();
    let (dep, with, without) = rt.block_on(async {
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

    let mut g = c.benchmark_group("retry-storm");
    g.bench_function("breaker_check_closed", |b| {
        b.iter(|| black_box(&breaker).try_acquire().expect("closed").success())
    });
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    g.bench_function("work_with_breaker", |b| {
        b.to_async(&rt).iter(|| get(with_url.clone()))
    });
    g.bench_function("work_without_breaker", |b| {
        b.to_async(&rt).iter(|| get(without_url.clone()))
    });
    g.finish();

    // The summary a reader would quote.
    let n = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(&breaker).try_acquire().expect("closed").success();
    }
    let check_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let (with_p50, without_p50) = rt.block_on(async {
        let n = 2_000;
        let with = labkit::measure::sequential(n, |_| async {
            get(with_url.clone()).await;
            Ok::<_, ()>(())
        })
        .await;
        let without = labkit::measure::sequential(n, |_| async {
            get(without_url.clone()).await;
            Ok::<_, ()>(())
        })
        .await;
        (with.p50_ms, without.p50_ms)
    });
    println!(
        "retry-storm: a closed breaker's check costs {check_ns:.0} ns per call = {:.3} % of one \
         /work request through a real hop ({:.0} µs p50)",
        100.0 * check_ns / (without_p50 * 1e6),
        without_p50 * 1e3
    );
    println!(
        "retry-storm: /work with the breaker p50 {:.3} ms vs without {:.3} ms ({:.2}x, n=2000 \
         each): the breaker is not what makes a call slow",
        with_p50,
        without_p50,
        with_p50 / without_p50.max(1e-9)
    );

    rt.block_on(async {
        with.stop().await;
        without.stop().await;
        dep.server.stop().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
