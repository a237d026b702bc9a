//! Keys expire after the TTL: an expired key is a new key, and the reaper deletes it.

use std::time::Duration;

use lab_idempotency_keys::reaper::reap_expired;

use crate::helpers::{TestApp, payment_body};

#[tokio::test]
async fn an_expired_key_is_treated_as_new_and_the_reaper_removes_it() {
    let app = TestApp::spawn().await;
    let ttl = app.state.policy.key_ttl;
    let clock = &app.state.clock;

    // t0: key A used.
    assert_eq!(
        app.pay("alice", Some("A"), &payment_body(100)).await.status,
        201
    );
    // t0 + ttl/2: key B used. A and B both live.
    clock.advance(ttl / 2);
    assert_eq!(
        app.pay("alice", Some("B"), &payment_body(200)).await.status,
        201
    );
    // t0 + ttl + 1s: A expired, B live. The reaper deletes A only.
    clock.advance(ttl / 2 + Duration::from_secs(1));
    let deleted = reap_expired(app.pool(), clock.now(), 1000).await.unwrap();
    assert_eq!(deleted, 1);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys ORDER BY key")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_eq!(keys, ["B"]);

    // B within its TTL still replays; A is new again — even with another body, no 422.
    let b = app.pay("alice", Some("B"), &payment_body(200)).await;
    assert_eq!((b.status, b.replayed), (201, true));
    let a = app.pay("alice", Some("A"), &payment_body(300)).await;
    assert_eq!((a.status, a.replayed), (201, false));
    assert_eq!(app.charges("alice"), 3);
    app.finish().await;
}

#[tokio::test]
async fn an_expired_key_not_yet_reaped_is_also_treated_as_new() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.pay("alice", Some("A"), &payment_body(100)).await.status,
        201
    );
    app.state
        .clock
        .advance(app.state.policy.key_ttl + Duration::from_secs(1));
    let again = app.pay("alice", Some("A"), &payment_body(100)).await;
    assert_eq!((again.status, again.replayed), (201, false));
    assert_eq!(
        app.charges("alice"),
        2,
        "a new key record sends a new provider key"
    );
    app.finish().await;
}
