//! seek-vs-scan: the story's query ("invoices for one tenant, last 7 days") for the biggest
//! tenant, once per index variant, one client, on the smoke-scale table (50,000 invoices).
//!
//! Run with `cargo bench -p benches --bench seek-vs-scan`. The load-shaped numbers (p95
//! under several clients, default scale) come from `lab run seek-vs-scan`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_seek_vs_scan::query::{app_pool, recent_invoices};
use lab_seek_vs_scan::schema::{self, Dataset};
use lab_seek_vs_scan::variants::{self, Variant};
use labkit::Scale;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "seek-vs-scan", Scale::Smoke);
    let (pool, big) = rt.block_on(async {
        schema::load(&t.ctx.pg, Dataset::for_scale(Scale::Smoke), t.ctx.seed)
            .await
            .expect("load invoices");
        let tenants = schema::pick_tenants(&t.ctx.pg).await.expect("tenants");
        let pool = app_pool(&t.ctx, 1).await.expect("app pool");
        (pool, tenants.big.tenant_id)
    });

    let mut group = c.benchmark_group("seek-vs-scan/biggest-tenant-last-7-days");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    // In measurement order: VACUUM (for the last variant) cannot be undone.
    for variant in Variant::ALL {
        rt.block_on(variants::apply(&t.ctx.pg, variant))
            .expect("apply variant");
        group.bench_function(variant.key(), |b| {
            b.to_async(&rt)
                .iter(|| async { recent_invoices(&pool, big).await.expect("query") })
        });
    }
    group.finish();

    rt.block_on(async {
        pool.close().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
