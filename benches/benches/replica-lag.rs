//! replica-lag: one profile read three ways on a caught-up streaming replica — a plain
//! replica read, an LSN-wait read (check `pg_last_wal_replay_lsn()` against the user's last
//! write, then read the replica), and a primary read — on 100,000 profiles, one client.
//!
//! Run with `cargo bench -p benches --bench replica-lag`. Needs a replica (the local backend
//! starts one; env needs REPLICA_URL). The load-shaped numbers (p95 under 16 users, stale
//! rates) come from `lab run replica-lag`.

use std::time::Duration;

use benches::Bench;
use criterion::{Criterion, criterion_group, criterion_main};
use lab_replica_lag::read_routing::{self, Db, Lsn, ReadPolicy, Session};
use lab_replica_lag::schema::{self, Sizes};
use lab_replica_lag::standby::Standby;
use labkit::Scale;

const USER: i64 = 4_242;
const PROFILES: u64 = 100_000;
const GROUP: &str = "replica-lag/read-own-profile-caught-up";

fn bench(c: &mut Criterion) {
    let b = Bench::throwaway("replica-lag", Scale::Smoke);
    let t = &b;
    let setup = b.block_on(async {
        let natural = Standby::natural(t.ctx()).await?;
        schema::load(
            t.ctx(),
            Sizes {
                profiles: PROFILES,
                report_rows: 1_000,
            },
        )
        .await?;
        // The user's last write, already replayed: the LSN check passes at once.
        let db = Db::new("streaming replica", &t.ctx().pg, &natural.pool);
        let mut session = Session::default();
        read_routing::save_profile(&db, lsn_wait(), &mut session, USER, "bench").await?;
        let lsn = session.pending_lsn.clone().expect("LSN remembered");
        natural.catch_up(&t.ctx().pg).await?;
        anyhow::Ok((natural, db, lsn))
    });
    let (natural, db, lsn) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("replica-lag bench skipped: it needs a streaming replica: {e:#}");
            b.finish();
            return;
        }
    };

    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("replica", |bench| {
        bench.to_async(&b.rt).iter(|| async {
            read_routing::profile(&db.replica, USER)
                .await
                .expect("read")
        })
    });
    group.bench_function("lsn-wait-then-replica", |bench| {
        bench
            .to_async(&b.rt)
            .iter(|| async { lsn_wait_read(&db, &lsn).await })
    });
    group.bench_function("primary", |bench| {
        bench.to_async(&b.rt).iter(|| async {
            read_routing::profile(&db.primary, USER)
                .await
                .expect("read")
        })
    });
    group.finish();

    b.summary(
        GROUP,
        format!(
            "{PROFILES} profiles, a caught-up streaming replica on the same machine, one client"
        ),
    )
    .label("replica", "plain replica read")
    .label(
        "lsn-wait-then-replica",
        "check the replica's replay LSN, then read it",
    )
    .label("primary", "read the primary")
    .when(&["lsn-wait-then-replica", "replica"], |e| {
        format!(
            "an LSN-wait read on a caught-up replica costs {} = {:.2}× a plain replica read \
             ({}): check, then read — two round trips instead of one",
            e[0],
            e[0].ns / e[1].ns,
            e[1]
        )
    })
    .when(&["primary", "replica"], |e| {
        format!(
            "a primary read costs {} = {:.2}× the replica read (same machine, so no network \
             in either)",
            e[0],
            e[0].ns / e[1].ns
        )
    })
    .finish();

    drop(natural);
    b.finish();
}

fn lsn_wait() -> ReadPolicy {
    ReadPolicy::LsnWait {
        max_wait: Duration::from_millis(20),
        poll: Duration::from_millis(2),
    }
}

/// The first read after a write under LSN routing: check, then read the replica.
async fn lsn_wait_read(db: &Db, lsn: &Lsn) {
    let mut session = Session {
        pending_lsn: Some(lsn.clone()),
        ..Session::default()
    };
    let (_, route) = read_routing::read_profile(db, lsn_wait(), &mut session, USER)
        .await
        .expect("read");
    debug_assert_eq!(route, read_routing::Route::Replica);
}

criterion_group!(benches, bench);
criterion_main!(benches);
