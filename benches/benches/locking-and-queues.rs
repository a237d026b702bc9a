//! locking-and-queues: one claim from a 10,000-job queue, `FOR UPDATE` vs `FOR UPDATE SKIP
//! LOCKED`, one client. Every iteration is `BEGIN; <claim>; ROLLBACK`, so each claims from
//! the same state (the same oldest job, the same index).
//!
//! Two states: nobody else working (both claims take job 1), and 7 other workers each holding
//! a job in an open transaction (jobs 1–7 locked). In the second, SKIP LOCKED steps over the
//! 7 locked rows and takes job 8; FOR UPDATE would wait for job 1's worker to finish — its
//! cost there is that worker's job time, which no single-operation bench can time.
//!
//! Run with `cargo bench -p benches --bench locking-and-queues`. Throughput under 1 … 16
//! workers comes from `lab run locking-and-queues`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_locking_and_queues::queue::{ClaimMode, QUEUE, claim_rolled_back};
use lab_locking_and_queues::schema;
use labkit::Scale;
use sqlx::{Connection, PgConnection, PgPool};

const JOBS: i64 = 10_000;
const IN_FLIGHT: usize = 7;

async fn claim(pool: &PgPool, mode: ClaimMode) -> Result<i64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let id = claim_rolled_back(&mut conn, mode, QUEUE).await?;
    Ok(id.expect("the queue is never empty: every claim is rolled back"))
}

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "locking-and-queues", Scale::Smoke);
    let pool = rt.block_on(async {
        schema::create(&t.ctx.pg).await.expect("schema");
        schema::enqueue(&t.ctx.pg, QUEUE, JOBS)
            .await
            .expect("enqueue");
        sqlx::query("VACUUM ANALYZE jobs")
            .execute(&t.ctx.pg)
            .await
            .expect("vacuum");
        t.ctx.new_pool(1).await.expect("one-connection pool")
    });

    let mut group = c.benchmark_group("locking-and-queues/one-claim");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for mode in [ClaimMode::ForUpdate, ClaimMode::SkipLocked] {
        group.bench_function(format!("{}/idle", mode.key()), |b| {
            b.to_async(&rt)
                .iter(|| async { claim(&pool, mode).await.expect("claim") })
        });
    }

    // Seven workers mid-job: each holds the oldest job it could get, in an open transaction.
    let holders: Vec<PgConnection> = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..IN_FLIGHT {
            let mut conn = PgConnection::connect(t.ctx.database_url())
                .await
                .expect("connect");
            sqlx::raw_sql("BEGIN")
                .execute(&mut conn)
                .await
                .expect("begin");
            sqlx::query(ClaimMode::SkipLocked.claim_sql())
                .bind(QUEUE)
                .fetch_one(&mut conn)
                .await
                .expect("hold a job");
            held.push(conn);
        }
        held
    });
    let skipped_to = rt
        .block_on(claim(&pool, ClaimMode::SkipLocked))
        .expect("claim");
    assert_eq!(
        skipped_to,
        IN_FLIGHT as i64 + 1,
        "SKIP LOCKED takes the first free job"
    );
    group.bench_function(format!("skip_locked/{IN_FLIGHT}-in-flight"), |b| {
        b.to_async(&rt)
            .iter(|| async { claim(&pool, ClaimMode::SkipLocked).await.expect("claim") })
    });
    group.finish();

    // The ratios a reader would quote, from labkit's sequential timer (p50 of 2,000 claims).
    let n = 2_000;
    let skip_busy = rt.block_on(labkit::measure::sequential(n, |_| {
        claim(&pool, ClaimMode::SkipLocked)
    }));
    rt.block_on(async {
        for mut conn in holders {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
            let _ = conn.close().await;
        }
    });
    let (for_update, skip_idle) = rt.block_on(async {
        (
            labkit::measure::sequential(n, |_| claim(&pool, ClaimMode::ForUpdate)).await,
            labkit::measure::sequential(n, |_| claim(&pool, ClaimMode::SkipLocked)).await,
        )
    });
    println!(
        "locking-and-queues: one claim on an idle queue: SKIP LOCKED p50 {:.3} ms = {:.2}x FOR UPDATE ({:.3} ms) — the clause costs nothing by itself",
        skip_idle.p50_ms,
        skip_idle.p50_ms / for_update.p50_ms.max(1e-9),
        for_update.p50_ms
    );
    println!(
        "locking-and-queues: with {IN_FLIGHT} jobs in flight SKIP LOCKED p50 {:.3} ms ({:.2}x idle); FOR UPDATE would wait for job 1's worker to commit",
        skip_busy.p50_ms,
        skip_busy.p50_ms / skip_idle.p50_ms.max(1e-9)
    );

    rt.block_on(async {
        pool.close().await;
        t.finish().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
