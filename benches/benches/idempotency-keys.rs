//! One payment request over loopback HTTP, three ways: the first request under a fresh key
//! (claim the key, charge, two phase commits), the same request without any idempotency,
//! and the replay of a finished key (two statements, no provider call).
//!
//! `cargo bench -p benches --bench idempotency-keys`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_idempotency_keys::client::{payment_body, post_payment};
use lab_idempotency_keys::{assemble, schema};
use labkit::Scale;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "idempotency-keys", Scale::Smoke);
    let (_provider, provider_server, server) = rt.block_on(async {
        schema::setup(&t.ctx.pg).await.expect("schema");
        let (app, provider_server) = assemble(t.ctx.pg.clone()).await.expect("provider");
        let server = labkit::http::spawn(app.router()).await.expect("service");
        (app.provider, provider_server, server)
    });
    let http = labkit::http::client();
    let (pay, no_key) = (
        server.url("/v1/payments"),
        server.url("/lab/no-key/payments"),
    );
    let body = payment_body(1299);
    rt.block_on(async {
        let r = post_payment(&http, &pay, "bench", Some("replayed"), &body).await;
        assert_eq!(r.expect("first request").status, 201);
    });

    let mut g = c.benchmark_group("idempotency-keys");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let next_key = AtomicU64::new(0);
    g.bench_function("first_request", |b| {
        b.to_async(&rt).iter(|| {
            let key = format!("first-{}", next_key.fetch_add(1, Ordering::Relaxed));
            let (http, pay, body) = (&http, &pay, &body);
            async move {
                let r = post_payment(http, pay, "bench", Some(&key), body).await;
                assert_eq!(r.expect("first request").status, 201);
            }
        })
    });
    g.bench_function("no_idempotency", |b| {
        b.to_async(&rt).iter(|| async {
            let r = post_payment(&http, &no_key, "bench", None, &body).await;
            assert_eq!(r.expect("no-key request").status, 201);
        })
    });
    g.bench_function("replay", |b| {
        b.to_async(&rt).iter(|| async {
            let r = post_payment(&http, &pay, "bench", Some("replayed"), &body)
                .await
                .expect("replay");
            assert!(r.replayed);
        })
    });
    g.finish();

    rt.block_on(async {
        server.stop().await;
        provider_server.stop().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
