//! The harness against real servers, resolved exactly as the CLI resolves them.

use labkit::{SqlCounter, explain, seed, testing};

#[tokio::test]
async fn scratch_database_is_private_and_redis_keys_are_prefixed() {
    let a = testing::ctx("harness").await;
    let b = testing::ctx("harness").await;
    assert_ne!(a.ctx.database_name(), b.ctx.database_name());
    assert!(a.ctx.key("k").starts_with("lab:harness:"));
    assert_ne!(a.ctx.redis_prefix(), b.ctx.redis_prefix());
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&a.ctx.pg)
        .await
        .unwrap();
    let in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('t')::text")
        .fetch_one(&b.ctx.pg)
        .await
        .unwrap();
    assert_eq!(in_b, None, "b must not see a's table");
    a.finish().await;
    b.finish().await;
}

#[tokio::test]
async fn sql_counter_counts_exactly_and_only_its_own_scope() {
    let t = testing::ctx("harness").await;
    let pool = t.ctx.pg.clone();
    let mine = SqlCounter::new();
    let other = SqlCounter::new();
    mine.scope(async {
        for _ in 0..3 {
            sqlx::query("SELECT 1").execute(&pool).await.unwrap();
        }
    })
    .await;
    other
        .scope(async {
            sqlx::query("SELECT 2").execute(&pool).await.unwrap();
        })
        .await;
    // Outside any scope: counted by neither.
    sqlx::query("SELECT 3").execute(&pool).await.unwrap();
    assert_eq!(mine.get(), 3);
    assert_eq!(other.get(), 1);
    assert_eq!(mine.take(), 3);
    assert_eq!(mine.get(), 0);
    t.finish().await;
}

#[tokio::test]
async fn seeding_is_deterministic_and_skewed_and_explain_reads_the_plan() {
    let t = testing::ctx("harness").await;
    let pg = &t.ctx.pg;
    sqlx::query("CREATE TABLE items (id bigint PRIMARY KEY, tenant bigint, score float8) WITH (autovacuum_enabled = off)")
        .execute(pg)
        .await
        .unwrap();
    let stats = seed::generate(
        pg,
        "items",
        20_000,
        7,
        "INSERT INTO items SELECT g, labkit_skewed(g, $3, 1, 1000, 3), labkit_uniform(g, $3, 2) \
         FROM generate_series($1::bigint, $2::bigint) g",
        |q| q,
    )
    .await
    .unwrap();
    assert_eq!(stats.rows, 20_000);
    let checksum = |pg: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT md5(string_agg(id || ':' || tenant || ':' || score, ',' ORDER BY id)) FROM items",
        )
            .fetch_one(&pg)
            .await
            .unwrap()
    };
    let first = checksum(pg.clone()).await;
    sqlx::query("TRUNCATE items").execute(pg).await.unwrap();
    seed::generate_with(
        pg,
        "items",
        20_000,
        7,
        "INSERT INTO items SELECT g, labkit_skewed(g, $3, 1, 1000, 3), labkit_uniform(g, $3, 2) \
         FROM generate_series($1::bigint, $2::bigint) g",
        |q| q,
        1,
        3_000,
    )
    .await
    .unwrap();
    assert_eq!(
        first,
        checksum(pg.clone()).await,
        "same seed, other chunking: same rows"
    );
    let top: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE tenant = 1")
        .fetch_one(pg)
        .await
        .unwrap();
    assert!(
        top > 20_000 / 100,
        "tenant 1 is huge ({top} rows), not 1/1000 of the table"
    );

    sqlx::query("VACUUM ANALYZE items")
        .execute(pg)
        .await
        .unwrap();
    let plan = explain::analyze(pg, "SELECT id FROM items WHERE id = $1", |q| q.bind(5_i64))
        .await
        .unwrap();
    assert_eq!(plan.access_path(), "Index Only Scan");
    assert_eq!(plan.index_used(), Some("items_pkey"));
    assert_eq!(plan.rows_returned(), 1);
    assert_eq!(plan.heap_fetches(), 0);
    t.finish().await;
}

#[tokio::test]
async fn local_servers_leave_no_process_or_dir_behind() {
    let _guard = SERIAL.lock().await;
    // Runs its own backend start/stop; other tests may run concurrently, so compare this
    // test's own servers only: their dir must be gone and their pid dead after drop.
    let b = labkit::Backends::resolve(labkit::BackendChoice::Local)
        .await
        .unwrap();
    let pg_dir = b.local_postgres().unwrap().dir().unwrap().to_path_buf();
    assert!(pg_dir.exists());
    drop(b);
    assert!(!pg_dir.exists(), "temp dir removed on drop");
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn forced_docker_backend_without_engine_fails_fast_and_clearly() {
    // No engine on CI machines; with one, this test is skipped rather than starting containers.
    if labkit::backend::docker::engine_answers().await.is_ok() {
        return;
    }
    let t0 = std::time::Instant::now();
    let err = labkit::Backends::resolve(labkit::BackendChoice::Docker)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Docker"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn a_local_replica_streams_the_scratch_database_and_leaves_nothing_behind() {
    let t = testing::ctx("harness").await;
    let Some(mut replica) = testing::require(
        "a streaming replica",
        t.ctx.replica(&Default::default()).await,
        None,
    ) else {
        return;
    };
    let pg = &t.ctx.pg;
    sqlx::raw_sql("CREATE TABLE r (v int); INSERT INTO r VALUES (7)")
        .execute(pg)
        .await
        .unwrap();
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(pg)
        .await
        .unwrap();
    let streaming: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .fetch_one(pg)
            .await
            .unwrap();
    assert_eq!(streaming, 1, "the standby streams from the primary");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&replica.url)
        .await
        .unwrap();
    // Wait for the standby to replay past the insert (a bounded poll on a fact, not a sleep).
    let caught_up = async {
        loop {
            let done: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(&lsn)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if done {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), caught_up)
        .await
        .expect("replica replays within 20 s");
    let v: i32 = sqlx::query_scalar("SELECT v FROM r")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, 7);
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(in_recovery);
    drop(conn);
    let server = replica.server.take().unwrap();
    let dir = server.dir().unwrap().to_path_buf();
    drop(server);
    assert!(!dir.exists(), "the standby's dir is deleted with it");
    t.finish().await;
}

#[tokio::test]
async fn a_dedicated_postgres_can_crash_and_restart_with_its_committed_data() {
    let t = testing::ctx("harness").await;
    let opts = labkit::backend::PostgresOptions::default().set("fsync", "on");
    let Some(mut pg) = testing::require(
        "a dedicated Postgres",
        t.ctx.dedicated_postgres(&opts).await,
        None,
    ) else {
        return;
    };
    let url = pg.url("postgres");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fsync, "on", "the option overrides the throwaway default");
    sqlx::raw_sql("CREATE TABLE c (v int); INSERT INTO c VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    pg.crash();
    assert!(sqlx::PgPool::connect(&url).await.is_err(), "it is down");
    pg.restart().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM c")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "a synchronous commit survives the crash");
    pool.close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_dedicated_redis_has_its_own_settings_and_stops_on_demand() {
    let t = testing::ctx("harness").await;
    let opts = labkit::backend::RedisOptions {
        maxmemory: Some("2mb".into()),
        maxmemory_policy: Some("allkeys-lru".into()),
    };
    let Some(mut r) = testing::require(
        "a dedicated Redis",
        t.ctx.dedicated_redis(&opts).await,
        None,
    ) else {
        return;
    };
    let mut conn = r.client().get_multiplexed_async_connection().await.unwrap();
    let info = labkit::redis_info::info(&mut conn, "memory").await.unwrap();
    assert_eq!(info["maxmemory"], (2 * 1024 * 1024).to_string());
    assert_eq!(info["maxmemory_policy"], "allkeys-lru");
    r.stop().await;
    assert!(r.client().get_multiplexed_async_connection().await.is_err());
    t.finish().await;
}

/// A lab that reads `--clients`, ignores `--rate` on purpose and never looks at `--duration`.
struct KnobLab;

#[labkit::async_trait]
impl labkit::Lab for KnobLab {
    fn id(&self) -> &'static str {
        "knobs"
    }
    fn title(&self) -> &'static str {
        "knobs"
    }
    async fn run(&self, ctx: &labkit::LabCtx) -> anyhow::Result<labkit::Report> {
        let clients = ctx.clients(4);
        ctx.ignores(
            labkit::Knob::Rate,
            "a scripted interleaving has no arrival rate",
        );
        let r = labkit::closed_loop(
            labkit::ClosedLoop::new(clients, labkit::Bound::Count(20)).label("ping"),
            |_| async { Ok::<_, String>(()) },
        )
        .await;
        let mut report = ctx.report("knobs");
        report.p95("ping_p95_ms", "ping p95", &r.summary);
        Ok(report)
    }
}

#[tokio::test]
async fn load_knobs_reach_the_lab_and_ignored_ones_are_named_in_the_notes() {
    let backends = labkit::Backends::from_env().await.unwrap();
    let opts = labkit::RunOptions {
        scale: labkit::Scale::Smoke,
        load: labkit::LoadKnobs {
            clients: Some(2),
            duration: Some(std::time::Duration::from_secs(1)),
            rate: Some(100.0),
            warmup: None,
        },
        ..Default::default()
    };
    let out = labkit::run_lab(&KnobLab, &backends, opts).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&out.report.to_json()).unwrap();
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["load"]["clients"], 2);
    assert_eq!(json["load"]["set_by_user"]["rate_per_s"], 100.0);
    assert_eq!(json["phases"][0]["name"], "ping");
    assert_eq!(json["phases"][0]["clients"], 2);
    assert_eq!(json["phases"][0]["samples"], 20);
    assert_eq!(json["findings"]["ping_p95_ms"]["samples"], 20);
    assert_eq!(json["findings"]["ping_p95_ms"]["better"], "lower");
    let notes = json["notes"].to_string();
    assert!(
        notes.contains("--rate was ignored: a scripted interleaving"),
        "{notes}"
    );
    assert!(notes.contains("--duration was ignored"), "{notes}");
    assert!(!notes.contains("--clients was ignored"), "{notes}");
}

/// Send raw bytes, read the whole answer (the server closes after a parse error).
async fn raw_http(addr: std::net::SocketAddr, request: Vec<u8>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn requests_the_http_parser_rejects_still_get_a_json_error_body() {
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .fallback(labkit::http::not_found);
    let server = labkit::http::spawn(router).await.unwrap();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "NUL in a header",
            b"GET / HTTP/1.1\r\nhost: x\r\nx-bad: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "too many headers",
            {
                let mut r = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
                for i in 0..200 {
                    r.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            },
            431,
        ),
        (
            "a 70 KB URI",
            format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
        ),
        (
            "an unknown route",
            b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            404,
        ),
    ];
    for (what, request, want) in cases {
        let (status, body) = raw_http(server.addr, request).await;
        assert_eq!(status, want, "{what}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body:?}"));
        assert!(v["error"]["code"].is_string(), "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
}
