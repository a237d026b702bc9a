//! What saying no costs: one recommendations request over loopback HTTP, served (the
//! real read: ~2,000 index lookups and an aggregate) vs shed by tower's load-shed layer
//! (503 + Retry-After, no SQL), on the lab's smoke data. The ratio is why shedding keeps
//! goodput up: a rejection costs a small fraction of the work it avoids.
//!
//! `cargo bench -p benches --bench load-shedding`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_load_shedding::schema::{self, Shape};
use lab_load_shedding::{AppState, Gate, Limits, router};
use labkit::Scale;

async fn get(http: &reqwest::Client, url: &str, expect: u16) {
    let resp = http.get(url).send().await.expect("response");
    assert_eq!(resp.status().as_u16(), expect);
    resp.bytes().await.expect("body");
}

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "load-shedding", Scale::Smoke);
    let shape = Shape::for_scale(Scale::Smoke);
    let http = labkit::http::client();
    let (served, shed, gate, held) = rt.block_on(async {
        schema::setup(&t.ctx.pg, shape, t.ctx.seed)
            .await
            .expect("seed");
        let pool = t.ctx.new_pool(4).await.expect("pool");
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
    let served_url = |_: ()| {
        let p = 1 + product.fetch_add(1, Ordering::Relaxed) % shape.products as u64;
        served.url(&format!("/recommendations?product_id={p}"))
    };
    let shed_url = shed.url("/recommendations?product_id=2");

    let mut g = c.benchmark_group("load-shedding/one-request");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("served", |b| {
        b.to_async(&rt).iter(|| {
            let url = served_url(());
            let http = &http;
            async move { get(http, &url, 200).await }
        })
    });
    g.bench_function("shed_503", |b| {
        b.to_async(&rt).iter(|| get(&http, &shed_url, 503))
    });
    g.finish();

    // The summary a reader would quote.
    let (served_p50, shed_p50) = rt.block_on(async {
        let n = 500;
        let s = labkit::measure::sequential(n, |_| {
            let url = served_url(());
            let http = &http;
            async move {
                get(http, &url, 200).await;
                Ok::<_, ()>(())
            }
        })
        .await;
        let r = labkit::measure::sequential(n, |_| async {
            get(&http, &shed_url, 503).await;
            Ok::<_, ()>(())
        })
        .await;
        (s.p50_ms, r.p50_ms)
    });
    println!(
        "load-shedding: a served recommendations request p50 {served_p50:.3} ms, a shed one \
         (503 + Retry-After, no SQL) {shed_p50:.3} ms (n=500 each)"
    );
    println!(
        "load-shedding: saying no costs {:.1} % of saying yes ({:.0}x cheaper): shedding the \
         excess leaves the capacity to the admitted requests",
        100.0 * shed_p50 / served_p50.max(1e-9),
        served_p50 / shed_p50.max(1e-9)
    );

    rt.block_on(async {
        gate.release(1);
        let _ = held.await;
        served.stop().await;
        shed.stop().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
