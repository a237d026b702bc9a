//! rate-limiter: one admission decision per algorithm, one client — five Lua scripts on
//! Redis (one EVALSHA each) and governor in process memory.
//!
//! The policy is generous (a million per minute) so every decision is an admission, the path
//! that writes; 1,000 client keys rotate, as they would with many clients. What a sample
//! wrote (counters, buckets, the sliding log's sorted sets) is deleted after the sample,
//! outside the timing, so the sets do not grow from one sample to the next and every
//! sample measures the same decision.
//!
//! Run with `cargo bench -p benches --bench rate-limiter`. Accuracy at the window edge,
//! several instances and Redis outages come from `lab run rate-limiter`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use benches::Bench;
use benches::iters::then_reset;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_rate_limiter::clock::{Clock, SystemClock};
use lab_rate_limiter::limiter::{self, Algorithm, RedisStore};
use lab_rate_limiter::policy::Policy;
use labkit::Scale;

const GROUP: &str = "rate-limiter/one-decision";
const CLIENTS: usize = 1_000;

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("rate-limiter", Scale::Smoke);
    let store = b
        .block_on(RedisStore::connect(
            b.ctx().redis_client(),
            b.ctx().redis_prefix(),
        ))
        .expect("redis store");
    let policy = Policy::new(1_000_000, Duration::from_secs(60), 1_000_000).expect("valid policy");
    let keys: Vec<String> = (0..CLIENTS)
        .map(|i| format!("bench-client-{i:04}"))
        .collect();
    let (redis, pattern) = (
        b.ctx().redis.clone(),
        format!("{}*", b.ctx().redis_prefix()),
    );
    let reset = async || {
        let mut redis = redis.clone();
        let written: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut redis)
            .await
            .expect("KEYS");
        if !written.is_empty() {
            redis::cmd("DEL")
                .arg(&written)
                .query_async::<()>(&mut redis)
                .await
                .expect("DEL");
        }
    };
    let reset = &reset;

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for algorithm in Algorithm::ALL {
        let l = limiter::build(algorithm, policy, &store);
        let next = AtomicU64::new(0);
        group.bench_function(algorithm.id(), |bench| {
            bench.to_async(&b.rt).iter_custom(|iters| {
                let (l, keys, next) = (&l, &keys, &next);
                let decide = async move |_| {
                    let key = &keys[next.fetch_add(1, Ordering::Relaxed) as usize % keys.len()];
                    let d = l.check(key, SystemClock.now_ms()).await.expect("decision");
                    assert!(d.allowed);
                };
                async move { then_reset(iters, &decide, reset).await }
            })
        });
    }
    group.finish();

    let mut s = b.summary(
        GROUP,
        format!("{CLIENTS} client keys, every decision an admission, one client"),
    );
    for a in Algorithm::ALL {
        s = s.label(a.id(), a.name());
    }
    s.when(&["sliding_log", "fixed_window"], |e| {
        format!(
            "the sliding log (a sorted set per client) costs {} vs {} for the fixed window \
             ({:.2}×) — and its memory grows with the quota",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .when(&["gcra", "token_bucket"], |e| {
        format!(
            "GCRA {} vs token bucket {} ({:.2}×): one timestamp per client instead of two \
             fields",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .faster(
        "in-process governor vs the Redis GCRA script",
        "per decision",
        "in_memory",
        "gcra",
    )
    .line("the in-process limiter is fast because its state is not shared: N instances admit N × the quota")
    .finish();

    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
