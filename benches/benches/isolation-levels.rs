//! isolation-levels: one transfer, one client, no contention — what `FOR UPDATE` at read
//! committed and serializable cost when nothing conflicts. (Under contention the difference
//! is retries and wrong balances, and those numbers come from `lab run isolation-levels`,
//! not from here.)
//!
//! Every iteration measures the same thing: transfers pick uniformly over 1,000 accounts (a
//! single client never conflicts with itself), and after each sample, outside the timing,
//! the ledger is truncated and every balance set back to its opening value — so the ledger
//! does not grow and no account drifts to zero (a declined transfer is a cheaper path).
//!
//! Run with `cargo bench -p benches --bench isolation-levels`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use benches::Bench;
use benches::iters::then_reset;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_isolation_levels::transfers::{self, Mode, Picker, Tally};
use labkit::Scale;

const ACCOUNTS: u64 = 1_000;
const GROUP: &str = "isolation-levels/one-transfer";

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("isolation-levels", Scale::Smoke);
    let pool = b.block_on(async {
        transfers::setup(&b.ctx().pg, ACCOUNTS, b.ctx().seed)
            .await
            .expect("seed accounts");
        let (pool, _) = transfers::pool(b.ctx(), 1).await.expect("transfer pool");
        pool
    });
    let picker = Picker::new(ACCOUNTS, 0.0, b.ctx().seed);
    let tally = Tally::default();
    let seq = AtomicU64::new(0);
    let reset = async || {
        sqlx::raw_sql("TRUNCATE ledger; UPDATE accounts SET balance = opening")
            .execute(&pool)
            .await
            .expect("reset the ledger");
    };
    let reset = &reset;

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let modes = [Mode::ForUpdate, Mode::Serializable];
    for mode in modes {
        g.bench_function(mode.key(), |bench| {
            bench.to_async(&b.rt).iter_custom(|iters| {
                let (pool, picker, tally, seq) = (&pool, &picker, &tally, &seq);
                let one = async move |_| {
                    let tr = picker.pick(seq.fetch_add(1, Ordering::Relaxed));
                    transfers::transfer(pool, mode, tr, tally)
                        .await
                        .expect("an uncontended transfer commits");
                };
                async move { then_reset(iters, &one, reset).await }
            })
        });
    }
    g.finish();

    let mut s = b.summary(
        GROUP,
        format!("{ACCOUNTS} accounts, uniform picks, one client (no contention)"),
    );
    for m in modes {
        s = s.label(m.key(), m.label());
    }
    s.when(&["serializable", "for_update"], |e| {
        format!(
            "with nothing to conflict, serializable costs {} vs {} for FOR UPDATE ({:.2}×): \
             the isolation level is not what is expensive — the retries under contention are",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    b.block_on(pool.close());
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
