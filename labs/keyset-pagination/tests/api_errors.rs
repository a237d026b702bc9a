//! Bad input is a 400 with a JSON error body, never a panic, a 500 or axum's plain text.

mod common;

use common::{get_ok, next_cursor, seeded, serve, serve_with};
use lab_keyset_pagination::cursor::CursorCodec;
use lab_keyset_pagination::schema::Dataset;
use labkit::Scale;
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

    // The tail tenant has a handful of orders: one page.
    let tail = Dataset::for_scale(Scale::Smoke).tail_tenant();
    let page = get_ok(&srv, &format!("/v1/orders?limit=200&tenant_id={tail}")).await;
    assert!(!page["data"].as_array().unwrap().is_empty());
    assert_eq!(page["meta"]["next_cursor"], Value::Null);

    let past = get_ok(&srv, "/v1/orders?limit=50&page=5000").await;
    assert_eq!(past["data"].as_array().unwrap().len(), 0);
    assert_eq!(past["meta"]["total"], 50_000);

    t.finish().await;
}

/// What a hostile or careless client sends, as a raw HTTP/1.1 exchange: (status, body).
async fn raw(srv: &labkit::http::TestServer, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    // The server answers, then closes the connection after a request it could not parse.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut bytes),
    )
    .await;
    let text = String::from_utf8_lossy(&bytes);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{text}: not JSON: {e}"));
    (status, body)
}

#[tokio::test]
async fn a_corpus_of_bad_requests_gets_4xx_with_a_json_error_and_never_a_5xx() {
    let t = seeded().await;
    let srv = serve(&t).await;
    let client = labkit::http::client();
    let ten_mb = vec![b'x'; 10 * 1024 * 1024];

    // NUL and invalid UTF-8 in every parameter, garbage escapes, a 60 KB cursor.
    let mut queries: Vec<String> = ["limit", "page", "cursor", "status", "tenant_id"]
        .iter()
        .flat_map(|p| [format!("{p}=%00"), format!("{p}=1%00"), format!("{p}=%FF")])
        .collect();
    queries.extend([
        "limit=%ZZ".to_string(),
        "status=paid%00&tenant_id=1".to_string(),
        format!("cursor={}", "A".repeat(60_000)),
    ]);
    for q in &queries {
        let (status, _, body) = get_err(&srv, &format!("/v1/orders?{q}")).await;
        assert_eq!(status, 400, "?{q} -> {body}");
        assert!(body["error"]["code"].is_string(), "?{q} -> {body}");
    }

    // 10 MB bodies: the API reads none, and refuses them before any handler runs.
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let resp = client
            .request(method.clone(), srv.url("/v1/orders"))
            .header("content-type", "application/json")
            .body(ten_mb.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{method}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_too_large", "{method}");
    }

    // Requests the HTTP parser refuses before the router: still a JSON error body.
    let (status, body) = raw(
        &srv,
        b"GET /v1/orders HTTP/1.1\r\nHost: x\r\nX-Note: a\0b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let resp = client
        .get(srv.url("/v1/orders"))
        .header("x-big", "a".repeat(1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");

    t.finish().await;
}
