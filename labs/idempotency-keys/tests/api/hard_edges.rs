//! The hard edges an outside client found: every bad request is a 4xx with a JSON error
//! body — never a 5xx — and nothing is stored or charged for it.

use lab_idempotency_keys::bad_input::{self, TOKEN};
use lab_idempotency_keys::key::Caller;
use serde_json::json;

use crate::helpers::{TestApp, error_code};

#[tokio::test]
async fn every_bad_request_gets_its_4xx_with_a_json_error_and_leaves_no_trace() {
    let app = TestApp::spawn().await;
    let corpus = bad_input::corpus();
    let mut wrong = Vec::new();
    for bad in &corpus {
        let got = bad_input::send(&app.http, app.addr(), bad).await;
        if (got.status, got.code.as_deref()) != (bad.status, Some(bad.code)) {
            wrong.push(format!(
                "POST {} with {}: expected {} {}, got {} {:?}",
                bad.path, bad.what, bad.status, bad.code, got.status, got.code
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Every string field of every route with a body was tried with a NUL character, and an
    // object key: payments (currency, source) on 3 routes, the webhook (id, type,
    // data.charge_id, data.note), /lab/faults (crash_at), the provider's charge (currency,
    // source, customer) and its control (numbers only).
    let nul_cases = corpus
        .iter()
        .filter(|b| b.what.starts_with("NUL in"))
        .count();
    assert_eq!(nul_cases, 3 * (2 + 1) + (4 + 1) + (1 + 1) + (3 + 1) + 1);

    let stored: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM idempotency_keys WHERE caller = $1),
                (SELECT count(*) FROM naive_idempotency_keys WHERE caller = $1),
                (SELECT count(*) FROM payments WHERE caller = $1),
                (SELECT count(*) FROM webhook_events)",
    )
    .bind(Caller::from_token(TOKEN).as_str())
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        stored,
        (0, 0, 0, 0),
        "keys, naive keys, payments, webhook events stored"
    );
    assert_eq!(app.provider.requests(), 0, "nothing reached the provider");
    app.finish().await;
}

#[tokio::test]
async fn a_nul_character_in_any_webhook_field_is_400_and_the_inbox_still_works() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/webhooks/provider");
    // What the outside client sent: each of these was a 500 `internal` (Postgres refused
    // the byte in the INSERT).
    for event in [
        json!({ "id": "evt\u{0}x", "type": "charge.succeeded", "data": { "charge_id": "ch_1" } }),
        json!({ "id": "evt_1", "type": "charge\u{0}succeeded", "data": { "charge_id": "ch_1" } }),
        json!({ "id": "evt_1", "type": "charge.succeeded", "data": { "charge_id": "ch\u{0}1" } }),
    ] {
        let r = app.http.post(&url).json(&event).send().await.unwrap();
        assert_eq!(r.status(), 400, "{event}");
        assert_eq!(
            error_code(&r.bytes().await.unwrap()),
            "invalid_text",
            "{event}"
        );
    }
    // The JSON escape spelled out by hand, as curl sends it.
    let r = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"id":"evt\u0000x","type":"charge.succeeded","data":{"charge_id":"ch_1"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let event =
        json!({ "id": "evt_1", "type": "charge.succeeded", "data": { "charge_id": "ch_1" } });
    let r = app.http.post(&url).json(&event).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "processed"
    );
    app.finish().await;
}

#[tokio::test]
async fn the_providers_knobs_and_ledger_are_reachable_from_the_service() {
    // What the curl examples use: the provider's own API mounted at /lab/provider.
    let app = TestApp::spawn().await;
    let r = app
        .http
        .post(app.url("/lab/provider/control"))
        .json(&json!({ "latency_ms": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.pay(
            "alice",
            Some("order-1"),
            &crate::helpers::payment_body(1299)
        )
        .await
        .status,
        201
    );
    let charges: serde_json::Value = app
        .http
        .get(app.url("/lab/provider/v1/charges"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(charges.as_array().map(Vec::len), Some(1), "{charges}");
    app.finish().await;
}
