//! A crash after each recovery point, or a provider failure, then retries: one charge.

use std::time::Duration;

use lab_idempotency_keys::faults::FaultPoint;

use crate::helpers::{TestApp, error_code, payment_body};

const PAYMENTS: &str = "SELECT count(*) FROM payments WHERE caller = $1";
const RECEIPTS: &str =
    "SELECT count(*) FROM receipt_outbox o JOIN payments p ON p.id = o.payment_id
                        WHERE p.caller = $1";

/// Crash at `point`, retry at once, then retry after the lock timeout.
async fn crash_then_retry(point: FaultPoint) {
    let app = TestApp::spawn().await;
    let body = payment_body(2500);
    app.state.faults.arm(point);

    // t1: dies at `point`, no cleanup.
    let t1 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!(
        (t1.status, error_code(&t1.body).as_str()),
        (500, "simulated_crash")
    );

    // t2, at once: a dead request is indistinguishable from a slow one until the lock
    //     times out -> 409. Unless everything was committed: then it's the replay.
    let t2 = app.pay("alice", Some("order-1"), &body).await;
    if point == FaultPoint::AfterFinished {
        assert_eq!((t2.status, t2.replayed), (201, true));
    } else {
        assert_eq!(
            t2.status, 409,
            "{point:?}: the crashed request still holds the key"
        );
    }

    // t3, after the lock timeout: takes the key over and resumes from the recovery point.
    app.state
        .clock
        .advance(app.state.policy.lock_timeout + Duration::from_secs(1));
    let t3 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!(t3.status, 201, "{point:?}");
    // t4: the replay of whatever t3 (or t1) finished.
    let t4 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!((t4.status, t4.replayed), (201, true));
    assert_eq!(t4.body, t3.body);

    assert_eq!(app.charges("alice"), 1, "{point:?}: one provider charge");
    assert_eq!(
        app.count(PAYMENTS, "alice").await,
        1,
        "{point:?}: one payment row"
    );
    assert_eq!(
        app.count(RECEIPTS, "alice").await,
        1,
        "{point:?}: one receipt queued"
    );
    app.finish().await;
}

#[tokio::test]
async fn crash_after_the_key_is_started_then_retry_charges_once() {
    crash_then_retry(FaultPoint::AfterKeyStarted).await;
}

#[tokio::test]
async fn crash_after_the_provider_charged_then_retry_charges_once() {
    crash_then_retry(FaultPoint::AfterProviderCharge).await;
}

#[tokio::test]
async fn crash_after_the_charge_is_recorded_then_retry_charges_once() {
    crash_then_retry(FaultPoint::AfterChargeRecorded).await;
}

#[tokio::test]
async fn crash_after_finishing_then_retry_gets_the_replay() {
    crash_then_retry(FaultPoint::AfterFinished).await;
}

#[tokio::test]
async fn provider_error_after_charging_then_retry_charges_once() {
    let app = TestApp::spawn().await;
    let body = payment_body(2500);
    app.provider.fail_after_charge_next(1);

    // t1: the provider charged, then answered 500 -> ambiguous -> 502, key released.
    let t1 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!(
        (t1.status, error_code(&t1.body).as_str()),
        (502, "provider_unavailable")
    );
    assert_eq!(app.charges("alice"), 1);
    // t2, at once: resumes (no lock timeout to wait out); the provider recognises its key
    //     and returns the existing charge.
    let t2 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!((t2.status, t2.replayed), (201, false));
    assert_eq!(app.provider.requests(), 2);
    assert_eq!(app.charges("alice"), 1, "asked twice, charged once");
    assert_eq!(app.count(PAYMENTS, "alice").await, 1);
    app.finish().await;
}

#[tokio::test]
async fn provider_unavailable_then_retry_charges_once() {
    let app = TestApp::spawn().await;
    let body = payment_body(2500);
    app.provider.fail_next(1);
    let t1 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!(t1.status, 502);
    assert_eq!(app.charges("alice"), 0);
    let t2 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!((t2.status, t2.replayed), (201, false));
    assert_eq!(app.charges("alice"), 1);
    app.finish().await;
}

#[tokio::test]
async fn twenty_retries_racing_for_an_abandoned_key_resume_it_once() {
    let app = TestApp::spawn().await;
    app.state.faults.arm(FaultPoint::AfterProviderCharge);
    let t1 = app.pay("alice", Some("order-1"), &payment_body(1299)).await;
    assert_eq!(t1.status, 500);
    app.state
        .clock
        .advance(app.state.policy.lock_timeout + Duration::from_secs(1));

    // Twenty retries at once race for the stale lock: one takes it over (compare-and-set),
    // the rest see it freshly locked (409) or finished (replay).
    let replies = lab_idempotency_keys::client::burst(
        &app.http,
        &app.url("/v1/payments"),
        "alice",
        "order-1",
        20,
    )
    .await;
    let outcome = lab_idempotency_keys::client::classify(&replies);
    assert_eq!(outcome.fresh, 1, "{outcome:?}");
    assert_eq!(outcome.non_conforming, 0, "{outcome:?}");
    assert_eq!(app.charges("alice"), 1);
    assert_eq!(app.count(PAYMENTS, "alice").await, 1);
    assert_eq!(app.count(RECEIPTS, "alice").await, 1);
    app.finish().await;
}
