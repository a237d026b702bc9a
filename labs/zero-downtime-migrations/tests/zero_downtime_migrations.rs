//! The war story's claims, checked on real Postgres at smoke scale (20,000 items).
//!
//! Each blocking test is a transcript: `t1`, `t2`, `t3` are separate sessions, each step's
//! comment says what it holds or waits for, and every "BLOCKS" is observed in
//! `pg_blocking_pids` before the next step — never assumed from a sleep. Timings never
//! gate a test; the only timeouts are hang guards (a statement that should not block is
//! given 20 s to prove it, so a regression fails instead of hanging).

use std::time::Duration;

use lab_zero_downtime_migrations::app::{self, App};
use lab_zero_downtime_migrations::lock_modes::{LockMode, is_lock_not_available};
use lab_zero_downtime_migrations::lock_watch::{blocking_pids, wait_until_blocked_by};
use lab_zero_downtime_migrations::migration::{Guard, Migrator, Step, connect_as};
use lab_zero_downtime_migrations::observed::{Clock, Stage};
use lab_zero_downtime_migrations::schema::{self, Dataset};
use lab_zero_downtime_migrations::{ZeroDowntimeMigrations, indexes, rename};
use labkit::testing::TestCtx;
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;

const HANG_GUARD: Duration = Duration::from_secs(20);

/// A scratch database with the smoke-scale tables.
async fn seeded() -> TestCtx {
    let t = labkit::testing::ctx("zero-downtime-migrations").await;
    schema::create(&t.ctx.pg, Dataset::for_scale(t.ctx.scale), t.ctx.seed)
        .await
        .expect("seed");
    t
}

async fn session(t: &TestCtx, name: &str) -> (PgConnection, i32) {
    let mut c = connect_as(&t.ctx, name).await.expect("connect");
    let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .unwrap();
    (c, pid)
}

const INSERT: &str =
    "INSERT INTO items (customer_id, amount_cents, status) VALUES (1, 100, 'open')";

/// The strongest lock `pid` holds on `items`, from pg_locks.
async fn lock_held(conn: &mut PgConnection, pid: i32) -> Option<LockMode> {
    let modes: Vec<String> = sqlx::query_scalar(
        "SELECT mode FROM pg_locks WHERE pid = $1 AND granted AND relation = 'items'::regclass",
    )
    .bind(pid)
    .fetch_all(conn)
    .await
    .unwrap();
    modes.iter().filter_map(|m| LockMode::parse(m)).max()
}

#[tokio::test]
async fn an_alter_waiting_behind_a_reader_queues_every_later_select_until_lock_timeout_lets_go() {
    let t = seeded().await;
    let (mut t1, p1) = session(&t, "t1").await;
    let (mut t2, p2) = session(&t, "t2").await;
    let (mut t3, p3) = session(&t, "t3").await;
    let (mut watch, _) = session(&t, "watch").await;

    // t1: BEGIN; SELECT count(*) FROM items — holds ACCESS SHARE (the long analytics query)
    let mut tx1 = t1.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM items")
        .execute(&mut *tx1)
        .await
        .unwrap();

    // Without lock_timeout.
    let (go3, went3) = oneshot::channel::<()>();
    let alter = async {
        // t2: ALTER TABLE items ADD COLUMN note text — BLOCKS (pg_blocking_pids = [t1])
        sqlx::raw_sql("ALTER TABLE items ADD COLUMN note text")
            .execute(&mut t2)
            .await
    };
    let select = async {
        went3.await.unwrap();
        // t3: SELECT … WHERE id = 1 — BLOCKS behind t2's *pending* request (= [t2])
        sqlx::query("SELECT id FROM items WHERE id = 1")
            .fetch_one(&mut t3)
            .await
    };
    let observe = async {
        assert_eq!(
            wait_until_blocked_by(&mut watch, p2, p1).await.unwrap(),
            [p1]
        );
        go3.send(()).unwrap();
        assert_eq!(
            wait_until_blocked_by(&mut watch, p3, p2).await.unwrap(),
            [p2]
        );
        // t1: COMMIT — the ALTER runs, then the SELECT
        tx1.commit().await.unwrap();
    };
    let (altered, selected, ()) = tokio::join!(alter, select, observe);
    altered.expect("the ALTER lands once the reader is gone");
    selected.expect("the SELECT runs after the ALTER");

    // With lock_timeout: the ALTER gives up and the queue behind it moves on.
    let mut tx1 = t1.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM items")
        .execute(&mut *tx1)
        .await
        .unwrap();
    // t2: SET lock_timeout = '2s' (long enough for t3 to queue behind it first)
    sqlx::raw_sql("SET lock_timeout = '2s'")
        .execute(&mut t2)
        .await
        .unwrap();
    let (go3, went3) = oneshot::channel::<()>();
    let alter = async {
        // t2: ALTER TABLE items DROP COLUMN note — BLOCKS (= [t1]), then ERROR 55P03
        sqlx::raw_sql("ALTER TABLE items DROP COLUMN note")
            .execute(&mut t2)
            .await
    };
    let select = async {
        went3.await.unwrap();
        // t3: SELECT … — BLOCKS behind t2 (= [t2]) until t2 gives up, then completes while
        //     t1 still holds its lock
        sqlx::query("SELECT id FROM items WHERE id = 1")
            .fetch_one(&mut t3)
            .await
    };
    let observe = async {
        assert_eq!(
            wait_until_blocked_by(&mut watch, p2, p1).await.unwrap(),
            [p1]
        );
        go3.send(()).unwrap();
        assert_eq!(
            wait_until_blocked_by(&mut watch, p3, p2).await.unwrap(),
            [p2]
        );
    };
    let (altered, selected, ()) = tokio::join!(alter, select, observe);
    let err = altered.expect_err("the ALTER times out");
    assert!(is_lock_not_available(&err), "{err}");
    selected.expect("the SELECT completes once the ALTER gave up");
    assert_eq!(
        lock_held(&mut watch, p1).await,
        Some(LockMode::AccessShare),
        "the reader still holds its lock"
    );
    tx1.commit().await.unwrap();
    t.finish().await;
}

#[tokio::test]
async fn lock_timeout_with_retries_lands_the_alter_after_the_reader_ends() {
    let t = seeded().await;
    let (mut t1, p1) = session(&t, "t1").await;
    let (mut watch, _) = session(&t, "watch").await;
    let mut mig = Migrator::connect(&t.ctx).await.unwrap();
    let mig_pid = mig.pid;
    let clock = Clock::start(Duration::from_secs(1));
    let step = Step::new(
        "ADD COLUMN note",
        "items",
        "ALTER TABLE items ADD COLUMN note text",
    );

    // t1: BEGIN; SELECT … — holds ACCESS SHARE
    let mut tx1 = t1.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM items")
        .execute(&mut *tx1)
        .await
        .unwrap();
    let guard = Guard::default();
    let migrate = mig.run_guarded(step, &guard, &clock);
    let observe = async {
        // migration: ALTER with lock_timeout = 50ms — BLOCKS (= [t1]), 55P03, backs off,
        // tries again: two different waiting statements (by query_start) seen, so it retried.
        let mut attempts_seen = Vec::new();
        while attempts_seen.len() < 2 {
            let waiting: Option<i64> = sqlx::query_scalar(
                "SELECT (extract(epoch FROM query_start) * 1e6)::int8 FROM pg_stat_activity \
                 WHERE pid = $1 AND wait_event_type = 'Lock'",
            )
            .bind(mig_pid)
            .fetch_optional(&mut watch)
            .await
            .unwrap();
            if let Some(started) = waiting
                && !attempts_seen.contains(&started)
            {
                assert_eq!(blocking_pids(&mut watch, mig_pid).await.unwrap(), [p1]);
                attempts_seen.push(started);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // t1: COMMIT — the next attempt lands
        tx1.commit().await.unwrap();
    };
    let (outcome, ()) = tokio::join!(migrate, observe);
    let outcome = outcome.unwrap();
    assert!(outcome.landed(), "{:?}", outcome.error);
    assert!(outcome.attempts >= 2, "{outcome:?}");
    assert_eq!(outcome.timed_out.len() as u32, outcome.attempts - 1);
    assert_eq!(outcome.lock(), Some(LockMode::AccessExclusive));
    t.finish().await;
}

#[tokio::test]
async fn create_index_blocks_a_concurrent_insert_and_concurrently_does_not() {
    let t = seeded().await;
    let (mut t0, p0) = session(&t, "t0").await;
    let (mut t1, p1) = session(&t, "t1").await;
    let (mut t2, p2) = session(&t, "t2").await;
    let (mut watch, _) = session(&t, "watch").await;

    // t1: BEGIN; CREATE INDEX … — holds SHARE until COMMIT
    let mut tx1 = t1.begin().await.unwrap();
    sqlx::raw_sql("CREATE INDEX items_created_at_idx ON items (created_at)")
        .execute(&mut *tx1)
        .await
        .unwrap();
    assert_eq!(lock_held(&mut watch, p1).await, Some(LockMode::Share));
    // t2: INSERT … — BLOCKS (pg_blocking_pids = [t1])
    let insert = sqlx::raw_sql(INSERT).execute(&mut t2);
    let observe = async {
        assert_eq!(
            wait_until_blocked_by(&mut watch, p2, p1).await.unwrap(),
            [p1]
        );
        // t1: COMMIT — t2's INSERT goes through
        tx1.commit().await.unwrap();
    };
    let (inserted, ()) = tokio::join!(insert, observe);
    inserted.unwrap();
    sqlx::raw_sql("DROP INDEX items_created_at_idx")
        .execute(&mut t1)
        .await
        .unwrap();

    // t0: BEGIN; INSERT … — an app transaction still open (the build must wait for it)
    let mut tx0 = t0.begin().await.unwrap();
    sqlx::raw_sql(INSERT).execute(&mut *tx0).await.unwrap();
    // t1: CREATE INDEX CONCURRENTLY … — waits for t0 (= [t0]), holding SHARE UPDATE EXCLUSIVE
    let build =
        sqlx::raw_sql("CREATE INDEX CONCURRENTLY items_created_at_idx ON items (created_at)")
            .execute(&mut t1);
    let observe = async {
        assert_eq!(
            wait_until_blocked_by(&mut watch, p1, p0).await.unwrap(),
            [p0]
        );
        assert_eq!(
            lock_held(&mut watch, p1).await,
            Some(LockMode::ShareUpdateExclusive)
        );
        // t2: INSERT … — does NOT block while the build is under way
        tokio::time::timeout(HANG_GUARD, sqlx::raw_sql(INSERT).execute(&mut t2))
            .await
            .expect("an INSERT during CREATE INDEX CONCURRENTLY does not wait")
            .unwrap();
        // t0: COMMIT — the build carries on and finishes
        tx0.commit().await.unwrap();
    };
    let (built, ()) = tokio::join!(build, observe);
    built.unwrap();
    let invalid = indexes::invalid_indexes(&mut watch, "items").await.unwrap();
    assert!(invalid.is_empty(), "{invalid:?}");
    t.finish().await;
}

#[tokio::test]
async fn a_failed_concurrent_unique_build_is_left_invalid_then_dropped_and_rebuilt() {
    let t = seeded().await;
    let (mut t0, p0) = session(&t, "t0").await;
    let (mut t1, p1) = session(&t, "t1").await;
    let (mut watch, _) = session(&t, "watch").await;

    // t0: BEGIN; INSERT … ref = 1 — a duplicate of row 1's ref, not yet committed
    let mut tx0 = t0.begin().await.unwrap();
    let dup: i64 = sqlx::query_scalar(
        "INSERT INTO items (customer_id, ref, amount_cents, status) VALUES (1, 1, 0, 'open') \
         RETURNING id",
    )
    .fetch_one(&mut *tx0)
    .await
    .unwrap();
    // t1: CREATE UNIQUE INDEX CONCURRENTLY items_ref_key — waits for t0 (= [t0])
    let build = sqlx::raw_sql(indexes::UNIQUE_CONCURRENTLY.sql).execute(&mut t1);
    let observe = async {
        assert_eq!(
            wait_until_blocked_by(&mut watch, p1, p0).await.unwrap(),
            [p0]
        );
        // t0: COMMIT — the duplicate is in; t1's build will find it
        tx0.commit().await.unwrap();
    };
    let (built, ()) = tokio::join!(build, observe);
    let err = built.expect_err("the unique build fails on the duplicate");
    assert!(
        matches!(&err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505")),
        "{err}"
    );
    // The failed build left its index behind, INVALID.
    assert_eq!(
        indexes::invalid_indexes(&mut watch, "items").await.unwrap(),
        ["items_ref_key"]
    );
    // Drop it without blocking writes, fix the data, build again.
    sqlx::raw_sql(indexes::DROP_CONCURRENTLY.sql)
        .execute(&mut t1)
        .await
        .unwrap();
    sqlx::query("UPDATE items SET ref = nextval('items_ref_seq') WHERE id = $1")
        .bind(dup)
        .execute(&mut t1)
        .await
        .unwrap();
    sqlx::raw_sql(indexes::UNIQUE_CONCURRENTLY.sql)
        .execute(&mut t1)
        .await
        .unwrap();
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_ref_key'::regclass",
    )
    .fetch_one(&mut watch)
    .await
    .unwrap();
    assert!(valid);
    t.finish().await;
}

#[tokio::test]
async fn a_constant_default_keeps_the_relfilenode_and_a_volatile_default_rewrites_the_table() {
    let t = seeded().await;
    let pool = &t.ctx.pg;
    for (ddl, rewrites) in [
        (
            "ALTER TABLE items ADD COLUMN region text NOT NULL DEFAULT 'eu'",
            false,
        ),
        // now() is STABLE: evaluated once for the statement, stored as the missing value.
        (
            "ALTER TABLE items ADD COLUMN seen_at timestamptz DEFAULT now()",
            false,
        ),
        (
            "ALTER TABLE items ADD COLUMN touched_at timestamptz DEFAULT clock_timestamp()",
            true,
        ),
        (
            "ALTER TABLE items ADD COLUMN uid uuid DEFAULT gen_random_uuid()",
            true,
        ),
    ] {
        let before = schema::relfilenode(pool, "items").await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.to_string()))
            .execute(pool)
            .await
            .unwrap();
        let after = schema::relfilenode(pool, "items").await.unwrap();
        assert_eq!(before != after, rewrites, "{ddl}");
    }
    t.finish().await;
}

#[tokio::test]
async fn not_valid_then_validate_lets_an_insert_through_and_a_direct_add_blocks_it() {
    let t = seeded().await;
    let (mut t1, p1) = session(&t, "t1").await;
    let (mut t2, p2) = session(&t, "t2").await;
    let (mut watch, _) = session(&t, "watch").await;

    for (not_valid, validate) in [
        (
            "ALTER TABLE items ADD CONSTRAINT amount_nonnegative CHECK (amount_cents >= 0) NOT VALID",
            "ALTER TABLE items VALIDATE CONSTRAINT amount_nonnegative",
        ),
        (
            "ALTER TABLE items ADD CONSTRAINT items_customer_fk FOREIGN KEY (customer_id) \
             REFERENCES customers (id) NOT VALID",
            "ALTER TABLE items VALIDATE CONSTRAINT items_customer_fk",
        ),
    ] {
        // t1: ADD CONSTRAINT … NOT VALID — a brief strong lock, no scan
        sqlx::raw_sql(not_valid).execute(&mut t1).await.unwrap();
        // t1: BEGIN; VALIDATE CONSTRAINT … — holds SHARE UPDATE EXCLUSIVE until COMMIT
        let mut tx1 = t1.begin().await.unwrap();
        sqlx::raw_sql(validate).execute(&mut *tx1).await.unwrap();
        assert_eq!(
            lock_held(&mut watch, p1).await,
            Some(LockMode::ShareUpdateExclusive)
        );
        // t2: INSERT … — does NOT block
        tokio::time::timeout(HANG_GUARD, sqlx::raw_sql(INSERT).execute(&mut t2))
            .await
            .expect("an INSERT during VALIDATE CONSTRAINT does not wait")
            .unwrap();
        // t1: COMMIT
        tx1.commit().await.unwrap();
    }

    // Direct: t1: BEGIN; ADD CONSTRAINT … CHECK — scans under ACCESS EXCLUSIVE, held to COMMIT
    let mut tx1 = t1.begin().await.unwrap();
    sqlx::raw_sql(
        "ALTER TABLE items ADD CONSTRAINT amount_small CHECK (amount_cents < 1000000000)",
    )
    .execute(&mut *tx1)
    .await
    .unwrap();
    assert_eq!(
        lock_held(&mut watch, p1).await,
        Some(LockMode::AccessExclusive)
    );
    // t2: INSERT … — BLOCKS (= [t1])
    let insert = sqlx::raw_sql(INSERT).execute(&mut t2);
    let observe = async {
        assert_eq!(
            wait_until_blocked_by(&mut watch, p2, p1).await.unwrap(),
            [p1]
        );
        // t1: COMMIT — t2 goes through
        tx1.commit().await.unwrap();
    };
    let (inserted, ()) = tokio::join!(insert, observe);
    inserted.unwrap();
    t.finish().await;
}

#[tokio::test]
async fn set_not_null_after_a_validated_check_skips_the_table_scan() {
    let t = seeded().await;
    let mut mig = Migrator::connect(&t.ctx).await.unwrap();
    let clock = Clock::start(Duration::from_secs(1));
    let set = Step::new(
        "SET NOT NULL",
        "items",
        "ALTER TABLE items ALTER COLUMN status SET NOT NULL",
    );
    let direct = mig.run(set, &clock).await.unwrap();
    assert_eq!(direct.table_scans, Some(1), "directly, it scans the table");
    assert_eq!(direct.lock(), Some(LockMode::AccessExclusive));

    let undo = Step::new(
        "DROP NOT NULL",
        "items",
        "ALTER TABLE items ALTER COLUMN status DROP NOT NULL",
    );
    mig.run(undo, &clock).await.unwrap();
    let check = Step::new(
        "CHECK NOT VALID",
        "items",
        "ALTER TABLE items ADD CONSTRAINT status_not_null CHECK (status IS NOT NULL) NOT VALID",
    );
    assert_eq!(mig.run(check, &clock).await.unwrap().table_scans, Some(0));
    let validate = Step::new(
        "VALIDATE",
        "items",
        "ALTER TABLE items VALIDATE CONSTRAINT status_not_null",
    );
    let validated = mig.run(validate, &clock).await.unwrap();
    assert_eq!(validated.table_scans, Some(1));
    assert_eq!(validated.lock(), Some(LockMode::ShareUpdateExclusive));
    let proven = mig.run(set, &clock).await.unwrap();
    assert_eq!(proven.table_scans, Some(0), "the CHECK proves it: no scan");
    t.finish().await;
}

#[tokio::test]
async fn expand_contract_with_both_app_versions_live_has_zero_errors_and_one_step_breaks_v1() {
    let t = seeded().await;
    let data = Dataset::for_scale(t.ctx.scale);
    let stage = Stage {
        ctx: &t.ctx,
        app: App::connect(&t.ctx, "zdm-app", 8, &app::ITEMS, data)
            .await
            .unwrap(),
        rate: 100.0,
        connections: 8,
        data,
    };
    let guard = Guard::default();
    let planned = Duration::from_secs(1);

    let one = rename::one_step(&stage, "one step", planned, guard)
        .await
        .unwrap();
    assert!(
        one.traffic[0].errors() > 0,
        "v1 breaks once the column is renamed"
    );
    assert!(
        one.traffic[0]
            .first_error()
            .is_some_and(|e| e.contains("does not exist")),
        "{:?}",
        one.traffic[0].first_error()
    );
    assert_eq!(
        one.traffic[1].errors(),
        0,
        "{:?}",
        one.traffic[1].first_error()
    );

    let ec = rename::expand_contract(&stage, "expand/contract", planned, guard, 500)
        .await
        .unwrap();
    for (v, tr) in ec.traffic.iter().enumerate() {
        assert!(!tr.served.is_empty(), "v{} served", v + 1);
        assert_eq!(tr.errors(), 0, "v{}: {:?}", v + 1, tr.first_error());
    }
    assert_eq!(
        ec.out.out_of_sync_rows, 0,
        "dual writes kept both columns equal"
    );
    assert!(
        ec.out.overlap() > Duration::ZERO,
        "both versions served at once"
    );
    assert!(ec.out.steps.iter().all(|s| s.landed()));
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = 'customers'::regclass \
         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .fetch_all(&t.ctx.pg)
    .await
    .unwrap();
    assert_eq!(columns, ["id", "full_name"]);
    stage.app.pool.close().await;
    t.finish().await;
}

#[tokio::test]
async fn a_smoke_run_keeps_its_contract_and_the_effects_hold() {
    let t = labkit::testing::ctx("zero-downtime-migrations").await;
    let report = labkit::testing::smoke_run_keeps_its_contract(&ZeroDowntimeMigrations, &t).await;
    // Effects, not timings.
    assert_eq!(report.get("lock_conflict_table_matches_docs"), Some(1.0));
    assert_eq!(report.get("invalid_index_detected"), Some(1.0));
    assert_eq!(report.get("invalid_index_rebuilt_valid"), Some(1.0));
    assert_eq!(report.get("volatile_default_rewrote_table"), Some(1.0));
    assert_eq!(report.get("constant_default_rewrote_table"), Some(0.0));
    assert_eq!(report.get("set_not_null_direct_table_scans"), Some(1.0));
    assert_eq!(
        report.get("set_not_null_after_check_table_scans"),
        Some(0.0)
    );
    assert_eq!(report.get("expand_contract_app_errors"), Some(0.0));
    assert_eq!(report.get("expand_contract_out_of_sync_rows"), Some(0.0));
    assert!(report.get("rename_one_step_old_app_errors").unwrap() > 0.0);
    assert!(report.get("lock_queue_blocked_requests").unwrap() > 0.0);
    assert!(report.get("lock_timeout_attempts").unwrap() >= 2.0);
    assert!(!report.charts.is_empty());
    t.finish().await;
}
