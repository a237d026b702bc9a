//! Bad input is a 400 with a JSON error body, never a panic, a 500 or axum's plain text.

mod common;

use common::{get_ok, next_cursor, seeded, serve, serve_with};
use lab_keyset_pagination::cursor::CursorCodec;
use serde_json::Value;

async fn get_err(srv: &labkit::http::TestServer, path: &str) -> (u16, String, Value) {
    let resp = labkit::http::client()
        .get(srv.url(path))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: body is not JSON: {e}"));
    (status, content_type, body)
}

#[tokio::test]
async fn bad_cursors_limits_pages_and_filters_get_a_400_with_a_json_error() {
    let t = seeded().await;
    let srv = serve(&t).await;
    let good = next_cursor(&get_ok(&srv, "/v1/orders?limit=5").await).unwrap();
    let paid = next_cursor(&get_ok(&srv, "/v1/orders?limit=5&status=paid").await).unwrap();

    // One character changed in the middle: the signature no longer matches.
    let mut tampered: Vec<char> = good.chars().collect();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    // A cursor signed with another server's secret.
    let foreign = {
        let other = serve_with(&t, CursorCodec::from_secret([7; 32])).await;
        next_cursor(&get_ok(&other, "/v1/orders?limit=5").await).unwrap()
    };

    let cases: Vec<(String, &str)> = vec![
        ("limit=abc".into(), "invalid_limit"),
        ("limit=0".into(), "invalid_limit"),
        ("limit=-5".into(), "invalid_limit"),
        ("limit=201".into(), "invalid_limit"),
        ("limit=1e3".into(), "invalid_limit"),
        ("limit=99999999999999999999999".into(), "invalid_limit"),
        ("page=0".into(), "invalid_page"),
        ("page=two".into(), "invalid_page"),
        ("page=99999999999".into(), "invalid_page"),
        (format!("page=2&cursor={good}"), "cursor_with_page"),
        ("cursor=not-a-cursor".into(), "invalid_cursor"),
        ("cursor=".into(), "invalid_cursor"),
        ("cursor=%F0%9F%92%A5".into(), "invalid_cursor"),
        (format!("cursor={}", "A".repeat(5000)), "invalid_cursor"),
        (format!("cursor={tampered}"), "invalid_cursor"),
        (format!("cursor={foreign}"), "invalid_cursor"),
        (
            format!("cursor={}", &good[..good.len() - 4]),
            "invalid_cursor",
        ),
        (format!("cursor={paid}"), "cursor_filter_mismatch"),
        (
            format!("cursor={good}&status=paid"),
            "cursor_filter_mismatch",
        ),
        (
            format!("cursor={paid}&status=paid&tenant_id=1"),
            "cursor_filter_mismatch",
        ),
        ("status=lost".into(), "invalid_status"),
        ("tenant_id=acme".into(), "invalid_tenant_id"),
        ("tenant_id=3000000000".into(), "invalid_tenant_id"),
        ("limit=1&limit=2".into(), "invalid_query"),
    ];
    for (query, code) in &cases {
        let (status, content_type, body) = get_err(&srv, &format!("/v1/orders?{query}")).await;
        assert_eq!(status, 400, "?{query} -> {body}");
        assert!(content_type.starts_with("application/json"), "?{query}");
        assert_eq!(body["error"]["code"], *code, "?{query} -> {body}");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "?{query}"
        );
    }

    // The same cursors still work where they belong.
    get_ok(&srv, &format!("/v1/orders?limit=5&cursor={good}")).await;
    get_ok(
        &srv,
        &format!("/v1/orders?limit=5&status=paid&cursor={paid}"),
    )
    .await;

    t.finish().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors_too() {
    let t = seeded().await;
    let srv = serve(&t).await;

    let (status, _, body) = get_err(&srv, "/v1/nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let resp = labkit::http::client()
        .post(srv.url("/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    t.finish().await;
}

#[tokio::test]
async fn the_last_keyset_page_has_no_next_cursor_and_a_page_past_the_end_is_empty() {
    let t = seeded().await;
    let srv = serve(&t).await;

    // tenant 2500 is in the long tail: a handful of orders, one page.
    let page = get_ok(&srv, "/v1/orders?limit=200&tenant_id=2500").await;
    assert!(!page["data"].as_array().unwrap().is_empty());
    assert_eq!(page["meta"]["next_cursor"], Value::Null);

    let past = get_ok(&srv, "/v1/orders?limit=50&page=5000").await;
    assert_eq!(past["data"].as_array().unwrap().len(), 0);
    assert_eq!(past["meta"]["total"], 50_000);

    t.finish().await;
}
