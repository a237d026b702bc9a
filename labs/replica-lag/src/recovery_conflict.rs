//! Scenario 4: a long report on the replica while the primary deletes and VACUUMs the rows
//! it reads.
//!
//! The report's snapshot still needs the deleted row versions. VACUUM on the primary removes
//! them and logs it; when the standby replays that record, the report is in the way. The
//! standby waits `max_standby_streaming_delay`, then cancels it: SQLSTATE 40001, "canceling
//! statement due to conflict with recovery". With `hot_standby_feedback = on` the standby
//! tells the primary the oldest transaction it still needs (`backend_xmin` in the primary's
//! `pg_stat_replication`); VACUUM then keeps those rows — no cancellation, and the dead
//! tuples stay on the primary instead (bloat, for as long as the report runs).
//!
//! The report is held open deterministically: it waits on an advisory lock the lab holds on
//! the replica (`pg_advisory_xact_lock_shared` in an InitPlan, so the statement's snapshot is
//! taken and no heap page is pinned while it waits — a held pin would be a different
//! conflict, one feedback does not prevent). Each step is observed, never slept for: the report
//! waiting on the lock (`pg_stat_activity`), the primary seeing the standby's xmin, the VACUUM's
//! WAL replayed on the standby.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

use crate::read_routing::{self, Lsn};
use crate::standby::{self, Standby, StandbyError};

/// The advisory lock key the report waits on.
const GATE: i64 = 19_019;

/// How many rounds, and the standby's patience.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rounds per setting (at most 5: each deletes its own tenth of the rows).
    pub rounds: u32,
    /// 30 s by default; shortened so a run does not wait 30 s per cancelled report. The
    /// mechanism is the same, only the wait is shorter.
    pub max_standby_streaming_delay: Duration,
}

/// Both settings' rounds.
#[derive(Debug, Clone)]
pub struct Conflicts {
    pub plan: Plan,
    pub without_feedback: Vec<Round>,
    pub with_feedback: Vec<Round>,
    /// `pg_stat_database_conflicts.confl_snapshot` on the standby, grown during the scenario.
    pub snapshot_conflicts: i64,
}

/// The scenario: `plan.rounds` rounds with `hot_standby_feedback = off`, then as many with it on.
pub async fn run(
    primary: &PgPool,
    standby: &mut Standby,
    plan: &Plan,
) -> Result<Conflicts, StandbyError> {
    let rounds = plan.rounds.clamp(1, 5) as i64;
    let mut setting = Setting {
        hot_standby_feedback: false,
        max_standby_streaming_delay: plan.max_standby_streaming_delay,
    };
    configure(standby, setting).await?;
    let before = snapshot_conflicts(standby)
        .await
        .map_err(anyhow::Error::from)?;
    let mut without_feedback = Vec::new();
    for slice in 0..rounds {
        without_feedback.push(round(primary, standby, false, slice, None).await?);
    }
    setting.hot_standby_feedback = true;
    configure(standby, setting).await?;
    let mut with_feedback: Vec<Round> = Vec::new();
    for slice in 5..5 + rounds {
        let previous = with_feedback.last().map(|r| r.deleted_by.clone());
        with_feedback.push(round(primary, standby, true, slice, previous.as_deref()).await?);
    }
    let after = snapshot_conflicts(standby)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(Conflicts {
        plan: *plan,
        without_feedback,
        with_feedback,
        snapshot_conflicts: after - before,
    })
}

/// The standby settings of one phase.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub hot_standby_feedback: bool,
    pub max_standby_streaming_delay: Duration,
}

/// One report run against one delete + VACUUM on the primary.
#[derive(Debug, Clone)]
pub struct Round {
    pub feedback: bool,
    pub rows_deleted: u64,
    /// The xid of the transaction that deleted them.
    pub deleted_by: String,
    /// `pg_stat_user_tables.n_dead_tup` on the primary right after the VACUUM.
    pub dead_tuples_after_vacuum: i64,
    /// The report's answer, when it finished.
    pub rows_counted: Option<i64>,
    /// SQLSTATE and message, when it was cancelled.
    pub error: Option<(String, String)>,
    /// From the VACUUM's end to the report's cancellation (the streaming delay at work).
    pub cancelled_after: Option<Duration>,
}

impl Round {
    pub fn cancelled_by_recovery(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|(code, msg)| code == "40001" && msg.contains("conflict with recovery"))
    }
}

/// Apply `setting` to a standby labkit started (SIGHUP; both settings reload without a
/// restart) and wait until sessions see it. A `REPLICA_URL` standby keeps its own settings:
/// the scenario is unavailable there.
pub async fn configure(standby: &mut Standby, setting: Setting) -> Result<(), StandbyError> {
    let Some(server) = standby.server() else {
        return Err(StandbyError::Unavailable(
            "the conflict needs hot_standby_feedback and max_standby_streaming_delay set on the \
             standby, which the lab only does on a standby labkit starts (--backend local)"
                .into(),
        ));
    };
    let delay = format!("{}ms", setting.max_standby_streaming_delay.as_millis());
    let feedback = if setting.hot_standby_feedback {
        "on"
    } else {
        "off"
    };
    server
        .reload_with(&[
            ("max_standby_streaming_delay", &delay),
            ("hot_standby_feedback", feedback),
        ])
        .map_err(|e| StandbyError::Failed(e.into()))?;
    let started = Instant::now();
    loop {
        let seen: (String, String) = sqlx::query_as(
            "SELECT current_setting('max_standby_streaming_delay'), \
                    current_setting('hot_standby_feedback')",
        )
        .fetch_one(&standby.pool)
        .await
        .map_err(|e| StandbyError::Failed(e.into()))?;
        if normalise_ms(&seen.0) == setting.max_standby_streaming_delay.as_millis()
            && seen.1 == feedback
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(StandbyError::Failed(anyhow::anyhow!(
                "the standby did not pick up {delay}/{feedback} within 10 s (shows {seen:?})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// "100ms" / "1s" / "30s" as Postgres shows a time setting, in ms.
fn normalise_ms(shown: &str) -> u128 {
    let digits: String = shown.chars().take_while(char::is_ascii_digit).collect();
    let n: u128 = digits.parse().unwrap_or(0);
    match &shown[digits.len()..] {
        "s" => n * 1000,
        "min" => n * 60_000,
        _ => n,
    }
}

/// One round: hold a report open on the standby, delete the rows with `id % 10 = slice` on
/// the primary, VACUUM, wait for the standby to replay it, then let the report finish (if it
/// is still there). With `feedback`, `after` is the xid of the previous round's DELETE: the
/// round waits until the standby's reported horizon has moved past it, so each round counts
/// only the dead tuples its own report holds back (feedback travels every
/// `wal_receiver_status_interval`, so back-to-back reports would otherwise pile up).
pub async fn round(
    primary: &PgPool,
    standby: &Standby,
    feedback: bool,
    slice: i64,
    after: Option<&str>,
) -> anyhow::Result<Round> {
    let mut gate = PgConnection::connect(standby.url()).await?;
    let mut report = PgConnection::connect(standby.url()).await?;
    let report_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut report)
        .await?;
    // gate: pg_advisory_lock — the report will queue behind it
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(GATE)
        .execute(&mut gate)
        .await?;

    // report: SELECT count(*) … — takes its snapshot, then BLOCKS on the gate
    let run_report = async {
        let result: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT count(*) FROM report_rows \
             WHERE (SELECT pg_advisory_xact_lock_shared($1)) IS NOT NULL",
        )
        .bind(GATE)
        .fetch_one(&mut report)
        .await;
        (result, Instant::now())
    };
    let conduct = async {
        let steps = vacuum_under_the_report(
            primary, standby, &mut gate, report_pid, feedback, slice, after,
        )
        .await;
        // gate: pg_advisory_unlock — a report still waiting now finishes (also after an error,
        // or the report would wait forever)
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(GATE)
            .execute(&mut gate)
            .await;
        let steps = steps?;
        unlocked?;
        Ok::<_, anyhow::Error>(steps)
    };
    let ((result, ended_at), conducted) = tokio::join!(run_report, conduct);
    let _ = gate.close().await;
    let _ = report.close().await;
    let (rows_deleted, deleted_by, dead_tuples_after_vacuum, vacuumed_at) = conducted?;
    let (rows_counted, error) = match result {
        Ok(n) => (Some(n), None),
        Err(sqlx::Error::Database(e)) => (
            None,
            Some((
                e.code().map(|c| c.to_string()).unwrap_or_default(),
                e.message().to_string(),
            )),
        ),
        Err(e) => return Err(e.into()),
    };
    Ok(Round {
        feedback,
        rows_deleted,
        deleted_by,
        dead_tuples_after_vacuum,
        rows_counted,
        cancelled_after: error
            .is_some()
            .then(|| ended_at.saturating_duration_since(vacuumed_at)),
        error,
    })
}

/// The primary's side of a round, with the report blocked on the standby: returns rows
/// deleted, the deleting xid, dead tuples left after VACUUM, and when VACUUM ended.
#[allow(clippy::too_many_arguments)] // one round's inputs, all of them needed
async fn vacuum_under_the_report(
    primary: &PgPool,
    standby: &Standby,
    gate: &mut PgConnection,
    report_pid: i32,
    feedback: bool,
    slice: i64,
    after: Option<&str>,
) -> anyhow::Result<(u64, String, i64, Instant)> {
    // standby: the report waits on the gate, holding a snapshot (pg_stat_activity says so)
    let report_xmin = wait_blocked(gate, report_pid).await?;
    if feedback {
        // primary: pg_stat_replication.backend_xmin now covers the report's xmin
        wait_primary_sees_xmin(primary, standby, &report_xmin, after).await?;
    }
    // primary: DELETE a tenth of the rows, VACUUM, count what VACUUM could not remove. One
    // connection, and the DELETE's statistics flushed before VACUUM reports its own (otherwise
    // they may land later and add to n_dead_tup).
    let mut conn = primary.acquire().await?;
    let mut tx = conn.begin().await?;
    let deleted = sqlx::query("DELETE FROM report_rows WHERE id % 10 = $1")
        .bind(slice)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let deleted_by: String = sqlx::query_scalar("SELECT pg_current_xact_id()::xid::text")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("VACUUM report_rows")
        .execute(&mut *conn)
        .await?;
    let vacuumed_at = Instant::now();
    let dead: i64 = sqlx::query_scalar(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'report_rows'",
    )
    .fetch_one(&mut *conn)
    .await?;
    // standby: replays the VACUUM — after cancelling the report, if it is in the way
    let lsn: Lsn = read_routing::lsn_after_commit(primary).await?;
    standby::catch_up_to(primary, &standby.pool, &lsn, Duration::from_secs(60)).await?;
    Ok((deleted, deleted_by, dead, vacuumed_at))
}

/// Wait until backend `pid` on the standby is waiting on a lock with a snapshot; its xmin.
async fn wait_blocked(on_standby: &mut PgConnection, pid: i32) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let xmin: Option<String> = sqlx::query_scalar(
            "SELECT backend_xmin::text FROM pg_stat_activity \
             WHERE pid = $1 AND wait_event_type = 'Lock' AND backend_xmin IS NOT NULL",
        )
        .bind(pid)
        .fetch_optional(&mut *on_standby)
        .await?
        .flatten();
        if let Some(xmin) = xmin {
            return Ok(xmin);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the report never blocked on the gate"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until the primary's view of the standby's oldest needed transaction (sent by
/// hot_standby_feedback) is at or before the report's xmin — and, given `after`, newer than
/// that xid. `age()` compares xids across wraparound (older = larger age).
async fn wait_primary_sees_xmin(
    primary: &PgPool,
    standby: &Standby,
    report_xmin: &str,
    after: Option<&str>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let covered: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or(age(backend_xmin) >= age($2::text::xid) \
                    AND ($3::text IS NULL OR age(backend_xmin) < age($3::text::xid))), false) \
             FROM pg_stat_replication WHERE ($1::text IS NULL OR application_name = $1)",
        )
        .bind(standby.application_name.as_deref())
        .bind(report_xmin)
        .bind(after)
        .fetch_one(primary)
        .await?;
        if covered {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the primary never received the standby's xmin (hot_standby_feedback)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counters on the standby: `pg_stat_database_conflicts.confl_snapshot` for this database.
pub async fn snapshot_conflicts(standby: &Standby) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT confl_snapshot FROM pg_stat_database_conflicts WHERE datname = current_database()",
    )
    .fetch_one(&standby.pool)
    .await
}
