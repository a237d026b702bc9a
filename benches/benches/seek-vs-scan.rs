//! seek-vs-scan: the story's query ("invoices for one tenant, last 7 days") for the biggest
//! tenant, once per index variant, one client.
//!
//! Data: the lab's default scale (2,000,000 invoices, 5,000 tenants; the biggest holds ~6 %)
//! loaded exactly as the lab loads it — primary key, ANALYZE, hint bits set, no VACUUM, so
//! the visibility map is empty — seeded once into the bench database and copied per run.
//! At the smoke scale (50,000 rows) every variant reads a handful of pages and the lesson
//! does not show; at this one it does (the lab's table: 17 vs 1,236 buffers).
//!
//! Each variant's index is built (and the others dropped) before it is measured, outside
//! the timing; the query only reads, so every iteration measures the same thing. VACUUM runs
//! once, after "covering, before VACUUM" and before "covering" is measured — never inside a
//! measurement — as in the lab.
//!
//! Run with `cargo bench -p benches --bench seek-vs-scan`. The load-shaped numbers (p95
//! under several clients, plans and buffers) come from `lab run seek-vs-scan`.

use std::time::Duration;

use benches::Bench;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use lab_seek_vs_scan::query::{app_pool, recent_invoices};
use lab_seek_vs_scan::schema::{self, Dataset};
use lab_seek_vs_scan::variants::{self, Variant};
use labkit::{LabCtx, Scale};

/// Bump when the seed below (or the lab's `schema::load`) changes: the bench database is
/// rebuilt.
const DATA_VERSION: u32 = 1;
const GROUP: &str = "seek-vs-scan/biggest-tenant-last-7-days";

fn bench(c: &mut Criterion) {
    let scale = benches::scale(Scale::Default);
    let data = Dataset::for_scale(scale);
    let b = Bench::cached("seek-vs-scan", scale, DATA_VERSION, async |ctx: &LabCtx| {
        schema::load(&ctx.pg, data, ctx.seed).await?;
        Ok(())
    });
    let (pool, big, median) = b.block_on(async {
        let tenants = schema::pick_tenants(&b.ctx().pg).await.expect("tenants");
        let pool = app_pool(b.ctx(), 1).await.expect("app pool");
        (pool, tenants.big, tenants.long_tail)
    });

    let mut group = c.benchmark_group(GROUP);
    for variant in Variant::ALL {
        // Index build (and, for the last, VACUUM) outside the timing.
        b.block_on(variants::apply(&b.ctx().pg, variant))
            .expect("apply variant");
        if matches!(variant, Variant::NoIndex | Variant::TenantOnly) {
            // Hundreds of ms to seconds per query at this scale: ten flat samples.
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(5));
        } else {
            group
                .sampling_mode(SamplingMode::Auto)
                .sample_size(30)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
        }
        group.bench_function(variant.key(), |bench| {
            bench
                .to_async(&b.rt)
                .iter(|| async { recent_invoices(&pool, big.tenant_id).await.expect("query") })
        });
        // The typical request of the lab's tenant mix: the median tenant.
        group.bench_function(format!("{}_median_tenant", variant.key()), |bench| {
            bench.to_async(&b.rt).iter(|| async {
                recent_invoices(&pool, median.tenant_id)
                    .await
                    .expect("query")
            })
        });
    }
    group.finish();

    let mut s = b.summary(
        GROUP,
        format!(
            "{} invoices ({scale} scale), the biggest tenant #{} ({} invoices, {} in the \
             window) and the median tenant #{} ({} invoices, {} in the window)",
            data.rows,
            big.tenant_id,
            big.rows,
            big.rows_last_7_days,
            median.tenant_id,
            median.rows,
            median.rows_last_7_days
        ),
    );
    for v in Variant::ALL {
        s = s.label(v.key(), &format!("{}, biggest tenant", v.label()));
        s = s.label(
            &format!("{}_median_tenant", v.key()),
            &format!("{}, median tenant", v.label()),
        );
    }
    s.faster(
        "covering (tenant_id, created_at DESC) INCLUDE, after VACUUM vs wrong order (created_at, tenant_id)",
        "per query",
        "covering",
        "wrong_order",
    )
    .faster(
        "wrong order (created_at, tenant_id) vs tenant only (tenant_id)",
        "per query",
        "wrong_order",
        "tenant_only",
    )
    .faster(
        "covering after VACUUM vs no index",
        "per query",
        "covering",
        "seq_scan",
    )
    .faster(
        "the same covering index after VACUUM vs before (the heap is skipped)",
        "per query",
        "covering",
        "covering_before_vacuum",
    )
    .faster(
        "median tenant: covering after VACUUM vs wrong order",
        "per query",
        "covering_median_tenant",
        "wrong_order_median_tenant",
    )
    .faster(
        "median tenant: wrong order vs tenant only",
        "per query",
        "wrong_order_median_tenant",
        "tenant_only_median_tenant",
    )
    .line(
        "for the biggest tenant the query returns every row of its window, and fetching and \
         decoding them is most of the time whichever index finds them; the typical (median) \
         tenant's request is where the index's pages, not the rows, are the cost",
    )
    .finish();

    b.block_on(pool.close());
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
