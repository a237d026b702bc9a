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
