//! The write path's effects, asserted exactly: the same rows whichever way they are written,
//! the protocol's parameter limit and its fix, the queue delivering once across a writer
//! crash, no acknowledged commit lost with `synchronous_commit = on`, bad input answered
//! with a JSON 4xx, and a smoke run carrying every promised finding key.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use lab_write_path::WritePath;
use lab_write_path::api::{self, AppState};
use lab_write_path::insert_methods::{self, Method, OVERSIZED_ROWS};
use lab_write_path::queue::{self, WriterConfig};
use lab_write_path::schema::{self, Checksum};
use lab_write_path::target::Target;
use sqlx::Connection;

#[tokio::test]
async fn every_insert_method_writes_exactly_the_same_rows() {
    let t = labkit::testing::ctx("write-path").await;
    let mut conn = t.ctx.pg.acquire().await.unwrap();
    schema::setup(&mut *conn).await.unwrap();
    // 2,345 rows: more than one 1,000-row statement, a partial last batch and transaction.
    let rows = schema::generate(t.ctx.seed, 0..2_345);
    let mut sums: Vec<(Method, Checksum)> = Vec::new();
    for method in Method::ALL {
        schema::reset(&mut *conn).await.unwrap();
        insert_methods::insert(&mut conn, method, &rows)
            .await
            .unwrap_or_else(|e| panic!("{method:?}: {e}"));
        sums.push((method, schema::checksum(&mut *conn).await.unwrap()));
    }
    let (_, first) = &sums[0];
    assert_eq!(first.rows, 2_345);
    assert_eq!(first.md5.len(), 32);
    for (method, sum) in &sums {
        assert_eq!(
            sum, first,
            "{method:?} wrote different rows than single-row INSERTs"
        );
    }
    drop(conn);
    t.finish().await;
}

#[tokio::test]
async fn a_multi_row_insert_over_65535_parameters_fails_and_unnest_of_the_same_rows_succeeds() {
    let t = labkit::testing::ctx("write-path").await;
    let mut conn = t.ctx.pg.acquire().await.unwrap();
    schema::setup(&mut *conn).await.unwrap();

    // 10,922 rows × 6 = 65,532 parameters: the largest multi-row INSERT that fits.
    let fits = schema::generate(t.ctx.seed, 0..(OVERSIZED_ROWS as u64 - 1));
    insert_methods::multi_values(&mut conn, &fits)
        .await
        .expect("65,532 parameters fit");

    // One row more: 65,538 parameters — refused before anything reaches the server.
    let limit = insert_methods::oversized_insert(&mut conn, t.ctx.seed)
        .await
        .unwrap();
    assert_eq!(limit.rows, 10_923);
    assert_eq!(limit.parameters, 65_538);
    let err = limit.values_error.expect("the oversized INSERT must fail");
    assert!(err.contains("too many arguments"), "{err}");
    // The same rows as one UNNEST: six array parameters, every row inserted.
    assert_eq!(limit.unnest_inserted, 10_923);
    drop(conn);
    t.finish().await;
}

#[tokio::test]
async fn the_queue_writer_delivers_every_acknowledged_entry_once_across_a_crash_and_restart() {
    let t = labkit::testing::ctx("write-path").await;
    schema::setup(&t.ctx.pg).await.unwrap();
    let stream = t.ctx.key("events");
    let client = t.ctx.redis_client();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    queue::setup(&mut redis, &stream).await.unwrap();
    let server = labkit::http::spawn(api::router(AppState {
        pg: t.ctx.pg.clone(),
        redis: redis.clone(),
        stream: Arc::from(stream.as_str()),
    }))
    .await
    .unwrap();

    // 50 events accepted by the queued endpoint: each 202 is a promise.
    let mut conn = labkit::http::Conn::new(server.addr);
    let mut acked = Vec::new();
    for n in 0..50 {
        let id = api::post_event(&mut conn, "/events/queued", &api::sample_body(n))
            .await
            .unwrap();
        acked.push(id);
    }
    assert_eq!(queue::backlog(&mut redis, &stream).await.unwrap(), 50);

    // writer: batch 1 (10 entries) COMMIT, XACK
    // writer: batch 2 (10 entries) COMMIT — crashes before XACK; the 10 stay pending
    // writer (restarted, same consumer): reads its pending batch 2 again — ON CONFLICT skips
    //         all 10 — then batches 3..5 as usual, and stops once the stream is drained.
    let stop = AtomicBool::new(true);
    let cfg = WriterConfig {
        max_batch: 10,
        linger: Duration::ZERO,
        crash_after_batches: Some(2),
        ..WriterConfig::default()
    };
    let (stats, result) =
        queue::run_writer(&t.ctx.connect_options(), &client, &stream, cfg, &stop).await;
    result.expect("the writer drains the stream after its restart");
    assert_eq!(stats.restarts, 1);
    assert_eq!(
        stats.skipped_duplicates, 10,
        "the replayed batch inserted nothing"
    );
    assert_eq!(stats.inserted, 50);
    assert_eq!(stats.undecodable, 0);

    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM events")
            .fetch_one(&t.ctx.pg)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (50, 50), "every entry exactly once");
    assert_eq!(schema::present(&t.ctx.pg, &acked).await.unwrap(), 50);
    // Acknowledged and deleted: nothing left in the stream to replay.
    assert_eq!(queue::backlog(&mut redis, &stream).await.unwrap(), 0);

    server.stop().await;
    t.finish().await;
}

#[tokio::test]
async fn acknowledged_commits_survive_a_server_crash_with_synchronous_commit_on() {
    let t = labkit::testing::ctx("write-path").await;
    let mut target = Target::open(&t.ctx).await.unwrap();
    let dedicated = match &target.fallback_reason {
        None => Ok(()),
        Some(why) => Err(why.clone()),
    };
    let Some(()) = labkit::testing::require("a Postgres the lab may crash", dedicated, None) else {
        return;
    };
    assert!(target.fsync_on());
    // t1: INSERT; COMMIT — acknowledged ×200, each after its WAL flush
    // t0: SIGKILL to every server process right after the 200th acknowledgement
    // t0: restart — crash recovery replays the WAL on disk
    let crash = lab_write_path::durability::crash_after_acks(&mut target, true, 200, 42)
        .await
        .unwrap();
    assert!(crash.acknowledged >= 200, "{crash:?}");
    assert_eq!(crash.lost, 0, "an acknowledged commit was lost: {crash:?}");
    // The server is back and writable.
    let mut conn = target.connect().await.unwrap();
    schema::reset(&mut conn).await.unwrap();
    let _ = conn.close().await;
    drop(target);
    t.finish().await;
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_never_a_500() {
    let t = labkit::testing::ctx("write-path").await;
    schema::setup(&t.ctx.pg).await.unwrap();
    let stream = t.ctx.key("events");
    let redis = t
        .ctx
        .redis_client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let server = labkit::http::spawn(api::router(AppState {
        pg: t.ctx.pg.clone(),
        redis,
        stream: Arc::from(stream.as_str()),
    }))
    .await
    .unwrap();
    let http = labkit::http::client();
    let json = "application/json";
    // method, path, content type, body, expected status, expected error code
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        u16,
        &'static str,
    );
    let cases: [Case; 8] = [
        ("POST", "/events", None, "{}", 415, "unsupported_media_type"),
        (
            "POST",
            "/events",
            Some(json),
            "{not json",
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/events",
            Some(json),
            r#"{"kind":"x\u0000"}"#,
            400,
            "invalid_text",
        ),
        (
            "POST",
            "/events",
            Some(json),
            r#"{"device_id":"seven"}"#,
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/events/queued",
            Some(json),
            r#"{"device_id":1,"kind":"DROP TABLE","value":1}"#,
            422,
            "invalid_event",
        ),
        (
            "POST",
            "/events",
            Some(json),
            r#"{"device_id":1,"kind":"click","value":1,"extra":true}"#,
            422,
            "invalid_body",
        ),
        ("GET", "/events", None, "", 405, "method_not_allowed"),
        ("GET", "/nope", None, "", 404, "not_found"),
    ];
    for (method, path, content_type, body, status, code) in cases {
        let mut req = http
            .request(method.parse().unwrap(), server.url(path))
            .body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path} {body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{method} {path} {body}: {v}");
    }
    // And the good request goes through.
    let mut conn = labkit::http::Conn::new(server.addr);
    api::post_event(&mut conn, "/events", &api::sample_body(1))
        .await
        .unwrap();
    server.stop().await;
    t.finish().await;
}

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_the_exact_numbers_hold() {
    let t = labkit::testing::ctx("write-path").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&WritePath, &t).await;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    // Exact, whatever the machine's speed.
    assert_eq!(report.get("fsync_on"), Some(1.0));
    assert_eq!(report.get("same_rows_every_method"), Some(1.0));
    assert_eq!(report.get("bind_parameter_limit_error"), Some(1.0));
    assert_eq!(report.get("sync_on_lost_on_crash"), Some(0.0));
    assert_eq!(report.get("queue_missing_after_writer_crash"), Some(0.0));
    assert!(report.get("queue_replayed_after_writer_crash").unwrap() > 0.0);
    assert!(!report.sentence.is_empty());
    t.finish().await;
}
