//! Against real Postgres (a throwaway server per test): the version check loses no update
//! under a race, a stale writer waits for the row lock and then updates nothing, the lab's
//! report carries every promised key, and `lab serve`'s router answers bad input with a 4xx
//! JSON body.

use std::time::Duration;

use lab_retry_storm::RetryStorm;
use lab_retry_storm::jitter::Strategy;
use lab_retry_storm::occ::{self, RaceConfig};

#[tokio::test]
async fn a_writer_with_a_stale_version_waits_for_the_row_lock_then_updates_nothing() {
    let t = labkit::testing::ctx("retry-storm").await;
    let pool = &t.ctx.pg;
    occ::setup(pool).await.unwrap();

    // t1: SELECT version → 0;  t2: SELECT version → 0
    assert_eq!(occ::read_version(pool).await.unwrap(), 0);
    assert_eq!(occ::read_version(pool).await.unwrap(), 0);
    // t1: BEGIN; UPDATE … WHERE version = 0 — 1 row, holds the row lock
    let mut t1 = pool.begin().await.unwrap();
    let t1_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *t1)
        .await
        .unwrap();
    let t1_rows = sqlx::query(
        "UPDATE hot_row SET version = version + 1, updates = updates + 1
         WHERE id = 1 AND version = 0",
    )
    .execute(&mut *t1)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(t1_rows, 1);
    // t2: UPDATE … WHERE version = 0 — BLOCKS (pg_blocking_pids = [t1])
    let mut t2 = pool.acquire().await.unwrap();
    let t2_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *t2)
        .await
        .unwrap();
    let t2_write = tokio::spawn(async move {
        sqlx::query(
            "UPDATE hot_row SET version = version + 1, updates = updates + 1
             WHERE id = 1 AND version = 0",
        )
        .execute(&mut *t2)
        .await
        .map(|r| r.rows_affected())
    });
    loop {
        let blockers: Vec<i32> = sqlx::query_scalar("SELECT unnest(pg_blocking_pids($1))")
            .bind(t2_pid)
            .fetch_all(pool)
            .await
            .unwrap();
        if blockers == [t1_pid] {
            break;
        }
        tokio::task::yield_now().await;
    }
    // t1: COMMIT — t2 wakes, re-reads the row (version 1 now) and updates 0 rows: a conflict
    t1.commit().await.unwrap();
    assert_eq!(t2_write.await.unwrap().unwrap(), 0);
    assert_eq!(occ::row(pool).await.unwrap(), (1, 1));
    t.finish().await;
}

#[tokio::test]
async fn racing_clients_each_land_exactly_one_update_with_every_strategy() {
    let t = labkit::testing::ctx("retry-storm").await;
    let pool = t.ctx.new_pool(11).await.unwrap();
    occ::setup(&pool).await.unwrap();
    for strategy in Strategy::ALL {
        let out = occ::race(&pool, 10, strategy, RaceConfig::COMPRESSED, 42)
            .await
            .unwrap();
        assert_eq!(out.final_version, 10, "{strategy:?}: a lost update");
        assert_eq!(occ::row(&pool).await.unwrap(), (10, 10), "{strategy:?}");
        assert!(out.calls >= 10, "{strategy:?}: {} calls", out.calls);
    }
    pool.close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_the_exact_effects_hold() {
    let t = labkit::testing::ctx("retry-storm").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&RetryStorm, &t).await;
    // Recovery times (seconds) also say how many requests after the fault they rest on.
    for f in report.findings.iter().filter(|f| f.unit == "s") {
        assert!(f.samples.is_some(), "{} has no sample count", f.key);
    }
    assert!(!report.sentence.is_empty());
    // Effects that do not depend on timing:
    assert_eq!(report.get("jitter_lost_updates"), Some(0.0));
    assert_eq!(report.get("misset_breaker_opened"), Some(0.0));
    assert!(
        report
            .get("amplification_budget_calls_per_request")
            .unwrap()
            < report
                .get("amplification_one_layer_calls_per_request")
                .unwrap()
    );
    t.finish().await;
}

#[tokio::test]
async fn lab_serve_answers_bad_fault_settings_with_a_json_4xx() {
    let t = labkit::testing::ctx("retry-storm").await;
    let app = lab_retry_storm::serve(&t.ctx).await.unwrap();
    assert!(app.banner.contains("{base}/dependency/fault"));
    let server = labkit::http::spawn(app.router).await.unwrap();
    let http = labkit::http::client();
    let fault = server.url("/dependency/fault");
    let post = |body: &'static str, json: bool| {
        let mut req = http.post(&fault).body(body);
        if json {
            req = req.header("content-type", "application/json");
        }
        req.send()
    };
    let cases = [
        (
            post(r#"{"error_rate":2}"#, true).await.unwrap(),
            422,
            "invalid_fault",
        ),
        (
            post(r#"{"capacity":0}"#, true).await.unwrap(),
            422,
            "invalid_fault",
        ),
        (
            post(r#"{"latency":5}"#, true).await.unwrap(),
            422,
            "invalid_body",
        ),
        (
            post(r#"{"error_rate":"#, true).await.unwrap(),
            400,
            "malformed_json",
        ),
        (
            post(r#"{"error_rate":0.5}"#, false).await.unwrap(),
            415,
            "unsupported_media_type",
        ),
        (
            http.get(server.url("/nope")).send().await.unwrap(),
            404,
            "not_found",
        ),
        (
            http.delete(server.url("/work")).send().await.unwrap(),
            405,
            "method_not_allowed",
        ),
    ];
    for (res, status, code) in cases {
        assert_eq!(res.status().as_u16(), status);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // A good setting applies, and /work still answers (the dependency is healthy).
    let ok = post(r#"{"latency_ms":5}"#, true).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let work = http
        .get(server.url("/work"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(work.status().as_u16(), 200);
    drop(app.keep_alive);
    t.finish().await;
}
