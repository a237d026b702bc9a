//! Concurrent duplicates: the key record holds, check-then-insert doesn't.

use lab_idempotency_keys::client::{burst, classify, post_payment};

use crate::helpers::{TestApp, payment_body};

#[tokio::test]
async fn fifty_concurrent_identical_requests_create_one_charge_twenty_times_over() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/payments");
    for round in 0..20 {
        let token = format!("client-{round}");
        let mut replies = burst(&app.http, &url, &token, "order-1", 50).await;
        app.provider.settle().await;
        replies.push(
            post_payment(
                &app.http,
                &url,
                &token,
                Some("order-1"),
                &payment_body(1299),
            )
            .await,
        );

        let outcome = classify(&replies);
        assert_eq!(app.charges(&token), 1, "round {round}: exactly one charge");
        assert_eq!(outcome.fresh, 1, "round {round}: exactly one fresh 201");
        assert_eq!(outcome.non_conforming, 0, "round {round}: {outcome:?}");
        assert!(
            outcome.identical_replays >= 1,
            "round {round}: the late retry replays"
        );
    }
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(payments, 20);
    app.finish().await;
}

#[tokio::test]
async fn check_then_insert_charges_twice_when_two_retries_overlap() {
    let app = TestApp::spawn().await;
    let url = app.url("/lab/naive/payments");
    let send = || {
        let (http, url) = (app.http.clone(), url.clone());
        tokio::spawn(async move {
            post_payment(&http, &url, "alice", Some("order-1"), &payment_body(1299))
                .await
                .unwrap()
        })
    };
    app.provider.hold();

    // t1: SELECT finds no record -> calls the provider, which holds it.
    let t1 = send();
    app.provider.wait_at_gate(1).await;
    // t2: SELECT still finds no record (t1 inserts only after the provider answers)
    //     -> calls the provider too.
    let t2 = send();
    app.provider.wait_at_gate(2).await;
    // Both are charged; both insert a record; both answer a fresh 201.
    app.provider.release();
    let (t1, t2) = (t1.await.unwrap(), t2.await.unwrap());
    assert_eq!((t1.status, t1.replayed), (201, false));
    assert_eq!((t2.status, t2.replayed), (201, false));
    assert_eq!(app.charges("alice"), 2, "the customer paid twice");
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM naive_idempotency_keys")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(records, 2, "and the 'idempotency' table has the key twice");
    app.finish().await;
}

#[tokio::test]
async fn without_a_key_every_retry_is_another_charge() {
    let app = TestApp::spawn().await;
    let url = app.url("/lab/no-key/payments");
    for _ in 0..3 {
        let r = post_payment(&app.http, &url, "alice", None, &payment_body(1299))
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
    assert_eq!(app.charges("alice"), 3);
    app.finish().await;
}
