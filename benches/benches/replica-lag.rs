//! replica-lag: one profile read three ways on a caught-up streaming replica — a plain
//! replica read, an LSN-wait read (check `pg_last_wal_replay_lsn()` against the user's last
//! write, then read the replica), and a primary read — on 100,000 profiles, one client.
//!
//! Run with `cargo bench -p benches --bench replica-lag`. Needs a replica (the local backend
//! starts one; env needs REPLICA_URL). The load-shaped numbers (p95 under 16 users, stale
//! rates) come from `lab run replica-lag`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lab_replica_lag::read_routing::{self, Db, Lsn, ReadPolicy, Session};
use lab_replica_lag::schema::{self, Sizes};
use lab_replica_lag::standby::Standby;
use labkit::Scale;

const USER: i64 = 4_242;

fn bench(c: &mut Criterion) {
    let rt = benches::runtime();
    let t = benches::ctx(&rt, "replica-lag", Scale::Smoke);
    let setup = rt.block_on(async {
        let natural = Standby::natural(&t.ctx).await?;
        schema::load(
            &t.ctx,
            Sizes {
                profiles: 100_000,
                report_rows: 1_000,
            },
        )
        .await?;
        // The user's last write, already replayed: the LSN check passes at once.
        let db = Db::new("streaming replica", &t.ctx.pg, &natural.pool);
        let mut session = Session::default();
        read_routing::save_profile(&db, lsn_wait(), &mut session, USER, "bench").await?;
        let lsn = session.pending_lsn.clone().expect("LSN remembered");
        natural.catch_up(&t.ctx.pg).await?;
        anyhow::Ok((natural, db, lsn))
    });
    let (natural, db, lsn) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("replica-lag bench skipped: it needs a streaming replica: {e}");
            rt.block_on(t.finish());
            return;
        }
    };

    let mut group = c.benchmark_group("replica-lag/read-own-profile-caught-up");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("replica", |b| {
        b.to_async(&rt).iter(|| async {
            read_routing::profile(&db.replica, USER)
                .await
                .expect("read")
        })
    });
    group.bench_function("lsn-wait-then-replica", |b| {
        b.to_async(&rt)
            .iter(|| async { lsn_wait_read(&db, &lsn).await })
    });
    group.bench_function("primary", |b| {
        b.to_async(&rt).iter(|| async {
            read_routing::profile(&db.primary, USER)
                .await
                .expect("read")
        })
    });
    group.finish();

    // The ratio a reader would quote, from labkit's sequential timer (p50 of 2,000 reads each).
    let (replica, lsn_read, primary) = rt.block_on(async {
        let n = 2_000;
        let replica =
            labkit::measure::sequential(n, |_| read_routing::profile(&db.replica, USER)).await;
        let lsn_read = labkit::measure::sequential(n, |_| async {
            Ok::<_, std::convert::Infallible>(lsn_wait_read(&db, &lsn).await)
        })
        .await;
        let primary =
            labkit::measure::sequential(n, |_| read_routing::profile(&db.primary, USER)).await;
        (replica, lsn_read, primary)
    });
    println!(
        "replica-lag: LSN-wait read on a caught-up replica p50 {:.3} ms = {:.2}x a plain replica read ({:.3} ms): check, then read — two round trips instead of one",
        lsn_read.p50_ms,
        lsn_read.p50_ms / replica.p50_ms.max(1e-9),
        replica.p50_ms
    );
    println!(
        "replica-lag: primary read p50 {:.3} ms = {:.2}x the replica read (same machine, so no network in either)",
        primary.p50_ms,
        primary.p50_ms / replica.p50_ms.max(1e-9)
    );

    rt.block_on(async {
        drop(natural);
        t.finish().await;
    });
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
