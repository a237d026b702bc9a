//! The Idempotency-Key contract: each status code, the byte-identical replay, bad input.

use lab_idempotency_keys::payments::{POLICY_HEADER, REPLAYED_HEADER};
use serde_json::json;

use crate::helpers::{TestApp, error_code, payment_body};

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_first_response_byte_for_byte() {
    let app = TestApp::spawn().await;
    let body = payment_body(1299);

    let first = app.pay("alice", Some("order-1"), &body).await;
    let retry = app.pay("alice", Some("order-1"), &body).await;

    assert_eq!(first.status, 201);
    assert!(!first.replayed);
    assert_eq!(retry.status, 201);
    assert!(retry.replayed, "the replay carries {REPLAYED_HEADER}");
    assert_eq!(first.body, retry.body, "replay is byte-identical");
    assert_eq!(app.charges("alice"), 1);
    app.finish().await;
}

#[tokio::test]
async fn every_payments_response_publishes_the_policy() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth("alice")
        .header("idempotency-key", "p-1")
        .json(&payment_body(100))
        .send()
        .await
        .unwrap();
    let policy = resp.headers()[POLICY_HEADER].to_str().unwrap().to_string();
    assert!(policy.contains("ttl=86400"), "{policy}");
    assert!(policy.contains("max-key-length=255"), "{policy}");
    let missing = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth("alice")
        .json(&payment_body(100))
        .send()
        .await
        .unwrap();
    assert!(
        missing.headers().contains_key(POLICY_HEADER),
        "errors carry it too"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_missing_key_is_400_and_charges_nothing() {
    let app = TestApp::spawn().await;
    let r = app.pay("alice", None, &payment_body(1299)).await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r.body), "idempotency_key_missing");
    assert_eq!(app.provider.requests(), 0);
    app.finish().await;
}

#[tokio::test]
async fn the_same_key_with_a_different_payload_is_422() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.pay("alice", Some("order-1"), &payment_body(1299))
            .await
            .status,
        201
    );

    let other = app.pay("alice", Some("order-1"), &payment_body(999)).await;

    assert_eq!(other.status, 422);
    assert_eq!(error_code(&other.body), "idempotency_key_reused");
    assert_eq!(app.charges("alice"), 1);
    app.finish().await;
}

#[tokio::test]
async fn the_same_payment_reencoded_is_the_same_request_not_a_422() {
    let app = TestApp::spawn().await;
    let first = app.pay("alice", Some("order-1"), &payment_body(1299)).await;
    // Other key order, other whitespace, upper-case currency: same canonical request.
    let reencoded = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth("alice")
        .header("idempotency-key", "\"order-1\"") // the draft's quoted spelling
        .header("content-type", "application/json")
        .body(r#"{ "source": "tok_visa",  "currency": "USD", "amount_cents": 1299 }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reencoded.status(), 201);
    assert!(reencoded.headers().contains_key(REPLAYED_HEADER));
    assert_eq!(reencoded.bytes().await.unwrap(), first.body);
    app.finish().await;
}

#[tokio::test]
async fn the_same_key_while_the_first_request_is_in_flight_is_409() {
    let app = TestApp::spawn().await;
    let body = payment_body(1299);
    app.provider.hold();

    // t1: claims the key and reaches the provider, which holds it.
    let t1 = {
        let (http, url, body) = (app.http.clone(), app.url("/v1/payments"), body.clone());
        tokio::spawn(async move {
            lab_idempotency_keys::client::post_payment(&http, &url, "alice", Some("order-1"), &body)
                .await
                .unwrap()
        })
    };
    app.provider.wait_at_gate(1).await;
    // t2: same key, t1 still in flight -> 409 with Retry-After.
    let t2 = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth("alice")
        .header("idempotency-key", "order-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(t2.status(), 409);
    assert_eq!(t2.headers()["retry-after"], "1");
    assert_eq!(
        error_code(&t2.bytes().await.unwrap()),
        "request_in_progress"
    );
    // The provider lets t1 through: t1 gets the fresh 201.
    app.provider.release();
    let t1 = t1.await.unwrap();
    assert_eq!((t1.status, t1.replayed), (201, false));
    // t3: after t1 finished -> the replay.
    let t3 = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!((t3.status, t3.replayed), (201, true));
    assert_eq!(t3.body, t1.body);
    assert_eq!(app.charges("alice"), 1);
    app.finish().await;
}

#[tokio::test]
async fn keys_are_scoped_per_caller() {
    let app = TestApp::spawn().await;
    let alice = app.pay("alice", Some("1"), &payment_body(1299)).await;
    let bob = app.pay("bob", Some("1"), &payment_body(1299)).await;
    assert_eq!((alice.status, alice.replayed), (201, false));
    assert_eq!(
        (bob.status, bob.replayed),
        (201, false),
        "bob's key 1 is not alice's"
    );
    assert_eq!((app.charges("alice"), app.charges("bob")), (1, 1));
    app.finish().await;
}

#[tokio::test]
async fn a_key_too_long_or_malformed_is_400() {
    let app = TestApp::spawn().await;
    let body = payment_body(1299);
    let long = "k".repeat(256);
    for bad in [
        long.as_str(),
        "has space",
        "\"unterminated",
        "\"a\"b",
        "\"\"",
    ] {
        let r = app.pay("alice", Some(bad), &body).await;
        assert_eq!(r.status, 400, "key {bad:?}");
        assert_eq!(
            error_code(&r.body),
            "idempotency_key_invalid",
            "key {bad:?}"
        );
    }
    let twice = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth("alice")
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert_eq!(app.provider.requests(), 0, "nothing reached the provider");
    let longest = "k".repeat(255);
    assert_eq!(app.pay("alice", Some(&longest), &body).await.status, 201);
    app.finish().await;
}

#[tokio::test]
async fn bad_input_is_4xx_with_a_json_error_never_500() {
    let app = TestApp::spawn().await;
    const JSON: &str = "application/json";
    let too_big = vec![b' '; 64 * 1024];
    let cases = [
        // (route, content type, body) -> (status, error.code)
        bad(
            "/v1/payments",
            JSON,
            br#"{"amount_cents": 12"#,
            400,
            "malformed_json",
        ),
        bad(
            "/v1/payments",
            JSON,
            br#"{"amount_cents": "12", "currency": "usd", "source": "t"}"#,
            422,
            "invalid_body",
        ),
        bad(
            "/v1/payments",
            JSON,
            br#"{"amount_cents": 12, "currency": "usd"}"#,
            422,
            "invalid_body",
        ),
        bad(
            "/v1/payments",
            JSON,
            br#"{"amount_cents": 12, "currency": "usd", "source": "t", "x": 1}"#,
            422,
            "invalid_body",
        ),
        bad(
            "/v1/payments",
            JSON,
            br#"{"amount_cents": -5, "currency": "usd", "source": "t"}"#,
            422,
            "invalid_request",
        ),
        bad(
            "/v1/payments",
            JSON,
            br#"{"amount_cents": 5, "currency": "dollars", "source": "t"}"#,
            422,
            "invalid_request",
        ),
        bad("/v1/payments", JSON, &too_big, 413, "body_too_large"),
        bad(
            "/v1/payments",
            "text/plain",
            b"hello",
            415,
            "unsupported_media_type",
        ),
        bad(
            "/v1/webhooks/provider",
            JSON,
            br#"{"id": 7, "type": "x"}"#,
            422,
            "invalid_body",
        ),
        bad(
            "/v1/webhooks/provider",
            JSON,
            b"not json",
            400,
            "malformed_json",
        ),
        bad(
            "/lab/faults",
            JSON,
            br#"{"crash_at": "never"}"#,
            422,
            "invalid_body",
        ),
        bad("/nope", JSON, b"{}", 404, "not_found"),
    ];
    for case in cases {
        let r = app
            .http
            .post(app.url(case.path))
            .bearer_auth("alice")
            .header("idempotency-key", "bad-input")
            .header("content-type", case.content_type)
            .body(case.body.clone())
            .send()
            .await
            .unwrap();
        let got = (r.status().as_u16(), error_code(&r.bytes().await.unwrap()));
        assert_eq!(got, case.expect, "{} {:?}", case.path, case.expect);
    }
    let anonymous = app
        .http
        .post(app.url("/v1/payments"))
        .header("idempotency-key", "bad-input")
        .json(&payment_body(5))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        error_code(&anonymous.bytes().await.unwrap()),
        "unauthorized"
    );
    let get = app.http.get(app.url("/v1/payments")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(
        error_code(&get.bytes().await.unwrap()),
        "method_not_allowed"
    );
    assert_eq!(
        app.provider.requests(),
        0,
        "no bad request reached the provider"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(
        stored, 0,
        "nothing is stored for a request we could not parse"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_declined_card_is_stored_and_replayed_not_charged_again() {
    let app = TestApp::spawn().await;
    let body = json!({ "amount_cents": 1299, "currency": "usd", "source": "tok_declined" });
    let first = app.pay("alice", Some("order-1"), &body).await;
    let retry = app.pay("alice", Some("order-1"), &body).await;
    assert_eq!((first.status, retry.status), (402, 402));
    assert!(retry.replayed);
    assert_eq!(first.body, retry.body);
    assert_eq!(
        app.provider.requests(),
        1,
        "the retry did not ask the provider again"
    );
    app.finish().await;
}

/// One bad request and the 4xx it must get.
struct Bad {
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    expect: (u16, String),
}

fn bad(
    path: &'static str,
    content_type: &'static str,
    body: &[u8],
    status: u16,
    code: &str,
) -> Bad {
    Bad {
        path,
        content_type,
        body: body.to_vec(),
        expect: (status, code.to_string()),
    }
}
