//! idempotency-keys: one payment request over loopback HTTP, three ways — the first request
//! under a fresh key (claim the key, charge, two phase commits), the same request without any
//! idempotency, and the replay of a finished key (two statements, no provider call).
//!
//! Every iteration measures the same thing: each first request gets a key never used before,
//! and what a sample wrote (key records, payments, receipts) is truncated after the sample,
//! outside the timing, so the tables hold at most one sample's rows instead of growing with
//! every iteration. The replayed key is claimed once, after the writing variants.
//!
//! Run with `cargo bench -p benches --bench idempotency-keys`. The concurrency numbers
//! (charges per key under bursts, crashes) come from `lab run idempotency-keys`.

use std::time::Duration;

use benches::Bench;
use benches::iters::then_reset;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_idempotency_keys::client::{payment_body, post_payment};
use lab_idempotency_keys::{assemble, schema};
use labkit::Scale;

const GROUP: &str = "idempotency-keys/one-payment-request";

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("idempotency-keys", Scale::Smoke);
    let pg = b.ctx().pg.clone();
    let (_provider, provider_server, server) = b.block_on(async {
        schema::setup(&pg).await.expect("schema");
        let (app, provider_server) = assemble(pg.clone()).await.expect("provider");
        let server = labkit::http::spawn(app.router()).await.expect("service");
        (app.provider, provider_server, server)
    });
    let http = labkit::http::client();
    let (pay, no_key) = (
        server.url("/v1/payments"),
        server.url("/lab/no-key/payments"),
    );
    let body = payment_body(1299);
    // What a sample wrote goes, before the next sample.
    let truncate = async || {
        sqlx::raw_sql("TRUNCATE idempotency_keys, payments, receipt_outbox")
            .execute(&pg)
            .await
            .expect("truncate");
    };
    let truncate = &truncate;

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let run = std::sync::atomic::AtomicU64::new(0);
    g.bench_function("first_request", |bench| {
        bench.to_async(&b.rt).iter_custom(|iters| {
            let sample = run.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (http, pay, body) = (&http, &pay, &body);
            let first = async move |i: u64| {
                // A key never used before: sample and iteration.
                let key = format!("first-{sample}-{i}");
                let r = post_payment(http, pay, "bench", Some(&key), body).await;
                assert_eq!(r.expect("first request").status, 201);
            };
            async move { then_reset(iters, &first, truncate).await }
        })
    });
    g.bench_function("no_idempotency", |bench| {
        bench.to_async(&b.rt).iter_custom(|iters| {
            let plain = async |_| {
                let r = post_payment(&http, &no_key, "bench", None, &body).await;
                assert_eq!(r.expect("no-key request").status, 201);
            };
            async move { then_reset(iters, &plain, truncate).await }
        })
    });
    b.block_on(async {
        let r = post_payment(&http, &pay, "bench", Some("replayed"), &body).await;
        assert_eq!(r.expect("the key to replay").status, 201);
    });
    g.bench_function("replay", |bench| {
        bench.to_async(&b.rt).iter(|| async {
            let r = post_payment(&http, &pay, "bench", Some("replayed"), &body)
                .await
                .expect("replay");
            assert!(r.replayed);
        })
    });
    g.finish();

    b.summary(
        GROUP,
        "one client over loopback HTTP, tables truncated after every sample",
    )
    .label(
        "first_request",
        "POST under a fresh key: claim, charge, two phase commits",
    )
    .label(
        "no_idempotency",
        "the same POST with no key and no key record",
    )
    .label(
        "replay",
        "POST of a finished key: the stored response, no provider call",
    )
    .when(&["first_request", "no_idempotency"], |e| {
        format!(
            "a first request under a fresh key costs {} vs {} without idempotency: {:.2}× — \
                 the key record and its two phase commits",
            e[0],
            e[1],
            e[0].ns / e[1].ns
        )
    })
    .when(&["replay", "first_request"], |e| {
        format!(
            "a replay costs {} = {:.0} % of a first request ({}): the retry is cheap, and it \
                 never reaches the provider",
            e[0],
            100.0 * e[0].ns / e[1].ns,
            e[1]
        )
    })
    .finish();

    b.block_on(async {
        server.stop().await;
        provider_server.stop().await;
    });
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
