//! One admission decision per algorithm: five Lua scripts on Redis (one EVALSHA each) and
//! governor in process memory.
//!
//! `cargo bench -p benches --bench rate-limiter`
//!
//! The policy is generous (a million per minute) so every decision is an admission, the path
//! that writes; 1,000 client keys rotate so the sliding log's sorted sets stay small, as they
//! would with many clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_rate_limiter::clock::{Clock, SystemClock};
use lab_rate_limiter::limiter::{self, Algorithm, RedisStore};
use lab_rate_limiter::policy::Policy;
use labkit::Scale;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "rate-limiter", Scale::Smoke);
    let store = rt
        .block_on(RedisStore::connect(
            t.ctx.redis_client(),
            t.ctx.redis_prefix(),
        ))
        .expect("redis store");
    let policy = Policy::new(1_000_000, Duration::from_secs(60), 1_000_000).expect("valid policy");
    let keys: Vec<String> = (0..1000).map(|i| format!("bench-client-{i:04}")).collect();

    let mut group = c.benchmark_group("rate-limiter/one-decision");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for algorithm in Algorithm::ALL {
        let l = limiter::build(algorithm, policy, &store);
        let next = AtomicU64::new(0);
        group.bench_function(algorithm.id(), |b| {
            b.to_async(&rt).iter(|| {
                let key = &keys[next.fetch_add(1, Ordering::Relaxed) as usize % keys.len()];
                let l = l.clone();
                async move {
                    let d = l.check(key, SystemClock.now_ms()).await.expect("decision");
                    assert!(d.allowed);
                }
            })
        });
    }
    group.finish();
    rt.block_on(t.finish());
}

criterion_group!(benches, bench);
criterion_main!(benches);
