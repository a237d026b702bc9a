//! One transfer, one client, no contention: what `FOR UPDATE` at read committed and
//! serializable cost when nothing conflicts. (Under contention the difference is retries,
//! and that number comes from `lab run isolation-levels`, not from here.)
//!
//! `cargo bench -p benches --bench isolation-levels`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_isolation_levels::transfers::{self, Mode, Picker, Tally};
use labkit::Scale;

const ACCOUNTS: u64 = 1_000;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "isolation-levels", Scale::Smoke);
    let pool = rt.block_on(async {
        transfers::setup(&t.ctx.pg, ACCOUNTS, t.ctx.seed)
            .await
            .expect("seed accounts");
        let (pool, _) = transfers::pool(t.ctx.database_url(), 1)
            .await
            .expect("transfer pool");
        pool
    });
    // Uniform picks over many accounts: a single client never conflicts with itself anyway.
    let picker = Picker::new(ACCOUNTS, 0.0, t.ctx.seed);
    let tally = Tally::default();
    let seq = AtomicU64::new(0);

    let mut g = c.benchmark_group("isolation-levels/one transfer");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for mode in [Mode::ForUpdate, Mode::Serializable] {
        g.bench_function(mode.label(), |b| {
            b.to_async(&rt).iter(|| async {
                let tr = picker.pick(seq.fetch_add(1, Ordering::Relaxed));
                transfers::transfer(&pool, mode, tr, &tally)
                    .await
                    .expect("an uncontended transfer commits")
            })
        });
    }
    g.finish();
    rt.block_on(async {
        pool.close().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
