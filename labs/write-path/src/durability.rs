//! What a commit costs, what `synchronous_commit = off` buys, and what it can lose.
//!
//! With `synchronous_commit = on` (the default) `COMMIT` returns only after the commit's WAL
//! record is flushed to disk: with `fsync = on` that is one `fdatasync` per commit, shared by
//! every transaction whose record was in the same flush (group commit: while one backend
//! waits for the disk, others queue behind it, and the next flush carries all of them).
//! `commit_delay` makes a committing backend wait a few microseconds before flushing, when at
//! least `commit_siblings` other transactions are open, hoping to carry more records.
//!
//! With `synchronous_commit = off` `COMMIT` returns as soon as the record is in the WAL
//! buffers in shared memory; the WAL writer writes and flushes them every
//! `wal_writer_delay` (200 ms) or as pages fill. A server crash loses the acknowledged
//! commits whose records were still in shared memory; an OS crash or power loss also loses
//! what was written to the kernel but not yet flushed — up to three `wal_writer_delay`s of
//! commits, as the docs say. The database stays consistent either way; it is the most
//! recent acknowledged transactions that vanish. [`crash_after_acks`] measures the first
//! kind by killing the dedicated server (`SIGKILL` to every process) right after a run of
//! acknowledged commits and counting which acknowledged rows recovery brought back. This lab
//! cannot pull the power, so the second kind is stated, not measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use labkit::{Bound, ClosedLoop, LoadResult, closed_loop};
use sqlx::{ConnectOptions, Connection};

use crate::schema::{self, Event, EventStream};
use crate::target::Target;

/// A closed-loop phase of single-row autocommit inserts, and the WAL flushes it caused.
#[derive(Debug, Clone)]
pub struct CommitRate {
    pub label: String,
    pub writers: usize,
    pub result: LoadResult,
    /// Commits made (warm-up included, like `wal_syncs`).
    pub commits: u64,
    /// `pg_stat_wal.wal_sync` over the phase, warm-up included (`None` where the server
    /// has no `pg_stat_wal`, before Postgres 14).
    pub wal_syncs: Option<i64>,
}

impl CommitRate {
    pub fn rows_per_s(&self) -> f64 {
        self.result.summary.throughput_per_s
    }

    /// Commits carried by each WAL flush: ~1 for one writer; more when group commit works.
    pub fn commits_per_flush(&self) -> Option<f64> {
        self.wal_syncs
            .map(|n| self.commits as f64 / n.max(1) as f64)
    }
}

/// How a phase's sessions are configured (`synchronous_commit`, `commit_delay`).
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub synchronous_commit: bool,
    /// Microseconds; 0 = off. Needs a superuser (it is on the lab's own server).
    pub commit_delay_us: u32,
}

impl Session {
    pub const DEFAULT: Session = Session {
        synchronous_commit: true,
        commit_delay_us: 0,
    };

    fn options(self) -> Vec<(&'static str, String)> {
        let mode = if self.synchronous_commit { "on" } else { "off" };
        let mut v = vec![("synchronous_commit", mode.to_string())];
        // Only when set: it needs a superuser, which a user's own server may not grant.
        if self.commit_delay_us > 0 {
            v.push(("commit_delay", self.commit_delay_us.to_string()));
        }
        v
    }
}

/// `writers` clients inserting one row per transaction for `duration`, sessions set up as
/// `session`, writing the next rows of `events`.
pub async fn commit_rate(
    target: &Target,
    label: String,
    writers: usize,
    session: Session,
    duration: Duration,
    warmup: Duration,
    events: &EventStream,
) -> anyhow::Result<CommitRate> {
    let options = target.connect_options().options(session.options());
    let pool = target.pool(writers as u32, options).await?;
    let syncs_before = target.wal_syncs().await.ok();
    let ids_before = events.issued();
    let result = {
        let (pool, events) = (pool.clone(), events.clone());
        closed_loop(
            ClosedLoop::new(writers, Bound::Duration(duration))
                .label(label.clone())
                .warmup(warmup),
            move |_| {
                let (pool, e) = (pool.clone(), events.next_event());
                async move { schema::insert_one(&pool, &e).await }
            },
        )
        .await
    };
    target.close_pool(pool).await?;
    let wal_syncs = match (syncs_before, target.wal_syncs().await.ok()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(CommitRate {
        label,
        writers,
        commits: events.issued() - ids_before - result.summary.errors,
        result,
        wal_syncs,
    })
}

/// What a crash right after acknowledged commits cost.
#[derive(Debug, Clone)]
pub struct CrashOutcome {
    pub synchronous_commit: bool,
    /// Commits the client saw succeed before the server died.
    pub acknowledged: u64,
    /// Of those, rows missing after crash recovery.
    pub lost: u64,
    /// Restart to first successful connection (crash recovery included).
    pub recovery: Duration,
    /// From the server's log: how long recovery spent fsyncing the data directory before
    /// replaying anything, and replaying the WAL.
    pub phases: Option<RecoveryPhases>,
}

/// Crash recovery's two steps, as the server logged them.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryPhases {
    /// `database system was interrupted` → `... not properly shut down; automatic recovery`:
    /// the fsync of every file in the data directory (`recovery_init_sync_method = fsync`),
    /// because a crash may have left unflushed writes in the kernel.
    pub sync_data_dir: Duration,
    /// `redo starts` → `redo done`.
    pub replay: Duration,
}

/// Read [`RecoveryPhases`] from the last crash recovery in `postgres.log` (the default
/// `log_line_prefix` starts every line with `2026-12-01 03:07:29.679 UTC`).
fn recovery_phases(log: &str) -> Option<RecoveryPhases> {
    let last = &log[log.rfind("database system was interrupted")?..];
    let start = log[..log.len() - last.len()]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let text = &log[start..];
    let at = |needle: &str| -> Option<chrono::NaiveDateTime> {
        let line = text.lines().find(|l| l.contains(needle))?;
        chrono::NaiveDateTime::parse_from_str(line.get(..23)?, "%Y-%m-%d %H:%M:%S%.3f").ok()
    };
    let span = |a: chrono::NaiveDateTime, b: chrono::NaiveDateTime| (b - a).to_std().ok();
    Some(RecoveryPhases {
        sync_data_dir: span(
            at("database system was interrupted")?,
            at("automatic recovery in progress")?,
        )?,
        replay: span(at("redo starts")?, at("redo done")?)?,
    })
}

/// One writer inserts rows one per transaction on the dedicated `server`; the moment the
/// `trigger`-th commit is acknowledged, the whole server is killed with `SIGKILL` (no
/// shutdown, no flush). After a restart — crash recovery replays the WAL on disk — count the
/// acknowledged rows that came back.
pub async fn crash_after_acks(
    target: &mut Target,
    synchronous_commit: bool,
    trigger: u64,
    seed: u64,
) -> anyhow::Result<CrashOutcome> {
    let mut conn = target.connect().await?;
    schema::reset(&mut conn).await?;
    // A checkpoint first, so recovery replays only this scenario's WAL.
    sqlx::query("CHECKPOINT").execute(&mut conn).await?;
    let _ = conn.close().await;
    let options = target.connect_options().options([(
        "synchronous_commit",
        if synchronous_commit { "on" } else { "off" },
    )]);
    let mut writer = options.connect().await?;
    let acked = AtomicU64::new(0);
    let (fire, fired) = tokio::sync::oneshot::channel::<()>();
    let Some(server) = target.server.as_mut() else {
        anyhow::bail!("the crash scenario needs the lab's dedicated server");
    };
    // The writer and the killer run in one task: once the trigger fires the killer runs
    // `crash()` at once, and the writer only sees the connection die. A commit counts as
    // acknowledged only if the client read its CommandComplete.
    let write = async {
        let mut fire = Some(fire);
        for n in 0.. {
            if schema::insert_one(&mut writer, &Event::nth(seed, n))
                .await
                .is_err()
            {
                break;
            }
            acked.store(n + 1, Ordering::SeqCst);
            if n + 1 == trigger
                && let Some(f) = fire.take()
            {
                let _ = f.send(());
            }
        }
    };
    let kill = async {
        if fired.await.is_ok() {
            server.crash();
        }
    };
    tokio::join!(write, kill);
    drop(writer);
    let recovery = server.restart().await?;
    let phases = server
        .dir()
        .and_then(|d| std::fs::read_to_string(d.join("postgres.log")).ok())
        .and_then(|log| recovery_phases(&log));
    let acknowledged = acked.load(Ordering::SeqCst);
    let ids: Vec<_> = (0..acknowledged)
        .map(|n| Event::nth(seed, n).event_id)
        .collect();
    let mut conn = target.connect().await?;
    let present = schema::present(&mut conn, &ids).await?;
    let _ = conn.close().await;
    Ok(CrashOutcome {
        synchronous_commit,
        acknowledged,
        lost: acknowledged - present,
        recovery,
        phases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_phases_come_from_the_last_crash_in_the_log() {
        let log = "\
2026-12-01 03:07:29.000 UTC [1] LOG:  database system was interrupted; last known up at x
2026-12-01 03:07:30.000 UTC [1] LOG:  database system was not properly shut down; automatic recovery in progress
2026-12-01 03:07:30.100 UTC [1] LOG:  redo starts at 0/1
2026-12-01 03:07:30.200 UTC [1] LOG:  redo done at 0/2
2026-12-01 03:08:00.000 UTC [2] LOG:  database system was interrupted; last known up at y
2026-12-01 03:08:02.500 UTC [2] LOG:  database system was not properly shut down; automatic recovery in progress
2026-12-01 03:08:02.510 UTC [2] LOG:  redo starts at 0/3
2026-12-01 03:08:02.513 UTC [2] LOG:  redo done at 0/4
";
        let p = recovery_phases(log).unwrap();
        assert_eq!(p.sync_data_dir, Duration::from_millis(2_500));
        assert_eq!(p.replay, Duration::from_millis(3));
    }
}
