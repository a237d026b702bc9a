//! load-shedding: what saying no costs — one recommendations request over loopback HTTP,
//! one client, served (the real read: index lookups and an aggregate) vs shed by tower's
//! load-shed layer (503 + Retry-After, no SQL). The ratio is why shedding keeps goodput up:
//! a rejection costs a small fraction of the work it avoids.
//!
//! Data: the lab's default scale (2,000 products, 20,000 customers, 400,000 orders), seeded
//! once into the bench database and copied per run. Served requests rotate over the
//! products (reads only); the shed server's only permit is held by a request parked at the
//! gate, so every other request is shed. Every iteration measures the same thing.
//!
//! Run with `cargo bench -p benches --bench load-shedding`. Goodput and p99 under overload
//! come from `lab run load-shedding`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use benches::Bench;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_load_shedding::schema::{self, Shape};
use lab_load_shedding::{AppState, Gate, Limits, router};
use labkit::{LabCtx, Scale};

/// Bump when the seed below (or the lab's `schema::setup`) changes: the bench database is
/// rebuilt.
const DATA_VERSION: u32 = 1;
const GROUP: &str = "load-shedding/one-request";

async fn get(http: &reqwest::Client, url: &str, expect: u16) {
    let resp = http.get(url).send().await.expect("response");
    assert_eq!(resp.status().as_u16(), expect);
    resp.bytes().await.expect("body");
}

fn bench(c: &mut Criterion) {
    let scale = benches::scale(Scale::Default);
    let shape = Shape::for_scale(scale);
    let b = Bench::cached(
        "load-shedding",
        scale,
        DATA_VERSION,
        async |ctx: &LabCtx| {
            schema::setup(&ctx.pg, shape, ctx.seed).await?;
            Ok(())
        },
    );
    let http = labkit::http::client();
    let (served, shed, gate, held) = b.block_on(async {
        let pool = b.ctx().new_pool(4).await.expect("pool");
        let served = AppState::new(pool.clone(), Limits::unprotected(4));
        let served = labkit::http::spawn(router(served)).await.expect("server");
        // A limit of one, taken by a request held at the gate: every other request is shed.
        let gate = Arc::new(Gate::default());
        let shed = AppState::new(pool, Limits::shed(4, 1)).gated(gate.clone());
        let shed = labkit::http::spawn(router(shed)).await.expect("server");
        let held = {
            let (http, url) = (http.clone(), shed.url("/recommendations?product_id=1"));
            tokio::spawn(async move { get(&http, &url, 200).await })
        };
        gate.until_entered(1).await;
        (served, shed, gate, held)
    });
    let product = AtomicU64::new(0);
    let served_url = || {
        let p = 1 + product.fetch_add(1, Ordering::Relaxed) % shape.products as u64;
        served.url(&format!("/recommendations?product_id={p}"))
    };
    let shed_url = shed.url("/recommendations?product_id=2");

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("served", |bench| {
        bench.to_async(&b.rt).iter(|| {
            let url = served_url();
            let http = &http;
            async move { get(http, &url, 200).await }
        })
    });
    g.bench_function("shed_503", |bench| {
        bench.to_async(&b.rt).iter(|| get(&http, &shed_url, 503))
    });
    g.finish();

    b.summary(
        GROUP,
        format!(
            "{} orders, {} products ({scale} scale), one client over loopback HTTP",
            shape.orders, shape.products
        ),
    )
    .label("served", "a recommendations request, served (SQL)")
    .label(
        "shed_503",
        "the same request, shed: 503 + Retry-After, no SQL",
    )
    .when(&["shed_503", "served"], |e| {
        format!(
            "saying no costs {} = {:.1} % of saying yes ({}), {:.0}× cheaper: shedding the \
             excess leaves the capacity to the admitted requests",
            e[0],
            100.0 * e[0].ns / e[1].ns,
            e[1],
            e[1].ns / e[0].ns
        )
    })
    .finish();

    b.block_on(async {
        gate.release(1);
        let _ = held.await;
        served.stop().await;
        shed.stop().await;
    });
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
