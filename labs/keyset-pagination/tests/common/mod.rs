//! Shared setup: a seeded smoke-scale `orders` table and the real service on a real socket.
#![allow(dead_code)] // each test binary uses a different subset

use lab_keyset_pagination::api::{self, AppState};
use lab_keyset_pagination::cursor::CursorCodec;
use lab_keyset_pagination::schema::{self, Dataset};
use labkit::Scale;
use labkit::http::TestServer;
use labkit::testing::TestCtx;
use serde_json::Value;

/// A scratch database with the smoke-scale table (50,000 orders, seed 42).
pub async fn seeded() -> TestCtx {
    let t = labkit::testing::ctx("keyset-pagination").await;
    schema::seed(&t.ctx.pg, Dataset::for_scale(Scale::Smoke), t.ctx.seed)
        .await
        .expect("seed orders");
    t
}

/// The service on `127.0.0.1:0`, with a fresh cursor secret.
pub async fn serve(t: &TestCtx) -> TestServer {
    serve_with(t, CursorCodec::random()).await
}

pub async fn serve_with(t: &TestCtx, cursors: CursorCodec) -> TestServer {
    let router = api::router(AppState {
        pool: t.ctx.pg.clone(),
        cursors,
    });
    labkit::http::spawn(router).await.expect("bind test server")
}

/// GET `path`, expecting 200 and a JSON body.
pub async fn get_ok(srv: &TestServer, path: &str) -> Value {
    let resp = labkit::http::client()
        .get(srv.url(path))
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json body");
    assert_eq!(status, 200, "GET {path} -> {body}");
    body
}

/// The ids of a page body, in order.
pub fn ids(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|o| o["id"].as_i64().expect("id"))
        .collect()
}

/// `meta.next_cursor`, if any.
pub fn next_cursor(page: &Value) -> Option<String> {
    page["meta"]["next_cursor"].as_str().map(str::to_owned)
}
