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

use benches::Bench;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_locking_and_queues::queue::{ClaimMode, QUEUE, claim_rolled_back};
use lab_locking_and_queues::schema;
use labkit::Scale;
use sqlx::{Connection, PgConnection, PgPool};

const JOBS: i64 = 10_000;
const IN_FLIGHT: usize = 7;
const GROUP: &str = "locking-and-queues/one-claim";

async fn claim(pool: &PgPool, mode: ClaimMode) -> Result<i64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let id = claim_rolled_back(&mut conn, mode, QUEUE).await?;
    Ok(id.expect("the queue is never empty: every claim is rolled back"))
}

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("locking-and-queues", Scale::Smoke);
    let t = &b;
    let pool = b.block_on(async {
        schema::create(&t.ctx().pg).await.expect("schema");
        schema::enqueue(&t.ctx().pg, QUEUE, JOBS)
            .await
            .expect("enqueue");
        sqlx::query("VACUUM ANALYZE jobs")
            .execute(&t.ctx().pg)
            .await
            .expect("vacuum");
        t.ctx().new_pool(1).await.expect("one-connection pool")
    });

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for mode in [ClaimMode::ForUpdate, ClaimMode::SkipLocked] {
        group.bench_function(format!("{}/idle", mode.key()), |bench| {
            bench
                .to_async(&b.rt)
                .iter(|| async { claim(&pool, mode).await.expect("claim") })
        });
    }

    // Seven workers mid-job: each holds the oldest job it could get, in an open transaction.
    let holders: Vec<PgConnection> = b.block_on(async {
        let mut held = Vec::new();
        for _ in 0..IN_FLIGHT {
            let mut conn = PgConnection::connect(t.ctx().database_url())
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
    let skipped_to = b
        .block_on(claim(&pool, ClaimMode::SkipLocked))
        .expect("claim");
    assert_eq!(
        skipped_to,
        IN_FLIGHT as i64 + 1,
        "SKIP LOCKED takes the first free job"
    );
    group.bench_function(format!("skip_locked/{IN_FLIGHT}-in-flight"), |bench| {
        bench
            .to_async(&b.rt)
            .iter(|| async { claim(&pool, ClaimMode::SkipLocked).await.expect("claim") })
    });
    group.finish();

    b.block_on(async {
        for mut conn in holders {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
            let _ = conn.close().await;
        }
    });

    let busy = format!("skip_locked/{IN_FLIGHT}-in-flight");
    b.summary(
        GROUP,
        format!("{JOBS} queued jobs, one client, BEGIN; claim; ROLLBACK per iteration"),
    )
    .label("for_update/idle", "FOR UPDATE, nobody else working: job 1")
    .label(
        "skip_locked/idle",
        "FOR UPDATE SKIP LOCKED, nobody else working: job 1",
    )
    .label(
        &busy,
        &format!(
            "SKIP LOCKED with jobs 1–{IN_FLIGHT} held by other workers: job {}",
            IN_FLIGHT + 1
        ),
    )
    .when(&["skip_locked/idle", "for_update/idle"], |e| {
        format!(
            "one claim on an idle queue: SKIP LOCKED {} = {:.2}× FOR UPDATE ({}) — the clause \
             costs nothing by itself",
            e[0],
            e[0].ns / e[1].ns,
            e[1]
        )
    })
    .when(&[&busy, "skip_locked/idle"], |e| {
        format!(
            "with {IN_FLIGHT} jobs in flight SKIP LOCKED claims in {} ({:.2}× idle); FOR \
             UPDATE would wait for job 1's worker to commit",
            e[0],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    b.block_on(pool.close());
    b.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
