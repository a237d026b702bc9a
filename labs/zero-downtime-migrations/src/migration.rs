//! Running one migration step so the report can say what it did to the table: the lock
//! it took (read from `pg_locks` inside its own transaction, before COMMIT), whether it
//! scanned the table (`pg_stat_get_xact_numscans`) or rewrote it (`pg_relation_filenode`
//! changed), how long it took — and, guarded, how often `lock_timeout` sent it back.
//!
//! [`Guard`] is the production answer to the lock queue (what strong_migrations, GitLab's
//! migration helpers and squawk all recommend): `SET LOCAL lock_timeout` so a DDL that
//! cannot get its lock gives up in milliseconds (SQLSTATE 55P03) instead of queueing the
//! whole app behind it, then retry with exponential backoff and jitter until it lands.
//! It is hand-written because it *is* the lesson; tower's retry is for requests, and a DDL
//! retry has to roll back and start a fresh transaction each time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use labkit::LabCtx;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::{Connection, PgConnection};

use crate::lock_modes::{LockMode, is_lock_not_available, pg_interval};
use crate::lock_watch::MIGRATION;
use crate::observed::Clock;

/// One step of a migration: a DDL (or DML) statement and the table it is about.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub name: &'static str,
    pub sql: &'static str,
    pub table: &'static str,
}

impl Step {
    pub const fn new(name: &'static str, table: &'static str, sql: &'static str) -> Self {
        Self { name, sql, table }
    }
}

/// What a step did.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub step: Step,
    /// When the first attempt began, on the scenario clock.
    pub started: Duration,
    /// When it landed (or finally failed), on the scenario clock.
    pub ended: Duration,
    /// The statement itself in the attempt that landed, lock wait included.
    pub took: Duration,
    pub attempts: u32,
    /// Attempts that hit `lock_timeout` (55P03), with when each began and how long it waited.
    pub timed_out: Vec<(Duration, Duration)>,
    /// The strongest lock held per table at the end of the step, from `pg_locks` (empty
    /// for steps that cannot run in a transaction; the watcher fills those in).
    pub held: BTreeMap<String, LockMode>,
    /// Sequential scans of the step's table it did (`None` outside a transaction).
    pub table_scans: Option<i64>,
    /// The table's file changed: it was rewritten.
    pub rewrote: bool,
    /// The error it ended with, if it did not land.
    pub error: Option<String>,
}

impl StepOutcome {
    /// The lock it took on its own table.
    pub fn lock(&self) -> Option<LockMode> {
        self.held.get(self.step.table).copied()
    }

    /// Locks as "items: SHARE, customers: SHARE ROW EXCLUSIVE".
    pub fn locks_text(&self) -> String {
        if self.held.is_empty() {
            return "–".into();
        }
        self.held
            .iter()
            .map(|(t, m)| format!("{t}: {m}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn landed(&self) -> bool {
        self.error.is_none()
    }
}

/// `lock_timeout` plus retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    pub lock_timeout: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
    pub seed: u64,
}

impl Default for Guard {
    /// 50 ms: long enough for the app's own sub-millisecond locks to drain, short enough
    /// that the requests queued behind one attempt wait at most that long.
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_millis(50),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: 60,
            seed: 42,
        }
    }
}

/// The migration's own connection (`application_name = zdm-migration`), no timeouts
/// unless a [`Guard`] sets one.
pub struct Migrator {
    conn: PgConnection,
    pub pid: i32,
}

impl Migrator {
    pub async fn connect(ctx: &LabCtx) -> Result<Self, sqlx::Error> {
        let mut conn = connect_as(ctx, MIGRATION).await?;
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        Ok(Self { conn, pid })
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Run `step` in a transaction, waiting for its lock as long as it takes (what a
    /// migration tool does by default).
    pub async fn run(&mut self, step: Step, clock: &Clock) -> Result<StepOutcome, sqlx::Error> {
        let started = clock.now();
        let a = self.attempt(step, None).await?;
        Ok(outcome(step, started, clock.now(), a, 1, Vec::new()))
    }

    /// Run `step` with `lock_timeout`; on 55P03 roll back, back off, try again.
    pub async fn run_guarded(
        &mut self,
        step: Step,
        guard: &Guard,
        clock: &Clock,
    ) -> Result<StepOutcome, sqlx::Error> {
        let mut rng = StdRng::seed_from_u64(guard.seed);
        let started = clock.now();
        let mut backoff = guard.first_backoff;
        let mut timed_out = Vec::new();
        for attempt in 1..=guard.max_attempts {
            let at = clock.now();
            let t = Instant::now();
            match self.attempt(step, Some(guard.lock_timeout)).await {
                Ok(a) => return Ok(outcome(step, started, clock.now(), a, attempt, timed_out)),
                Err(e) if is_lock_not_available(&e) => {
                    timed_out.push((at, t.elapsed()));
                    // Full jitter around the backoff (0.5–1.5×), so a fleet of migrators
                    // (or app retries) does not come back in lockstep.
                    tokio::time::sleep(backoff.mul_f64(rng.random_range(0.5..1.5))).await;
                    backoff = (backoff * 2).min(guard.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
        let mut o = outcome(
            step,
            started,
            clock.now(),
            Attempt::default(),
            guard.max_attempts,
            timed_out,
        );
        o.error = Some(format!(
            "gave up after {} attempts (lock_timeout each time)",
            guard.max_attempts
        ));
        Ok(o)
    }

    /// Run a statement that cannot run inside a transaction block (`CREATE INDEX
    /// CONCURRENTLY`, `DROP INDEX CONCURRENTLY`). Its error, if any, is kept, not returned:
    /// a failed concurrent build is part of the story.
    pub async fn run_outside_transaction(&mut self, step: Step, clock: &Clock) -> StepOutcome {
        let started = clock.now();
        let node0 = relfilenode(&mut self.conn, step.table).await.ok();
        let t = Instant::now();
        let r = sqlx::raw_sql(step.sql).execute(&mut self.conn).await;
        let took = t.elapsed();
        let node1 = relfilenode(&mut self.conn, step.table).await.ok();
        StepOutcome {
            step,
            started,
            ended: clock.now(),
            took,
            attempts: 1,
            timed_out: Vec::new(),
            held: BTreeMap::new(),
            table_scans: None,
            rewrote: node0.is_some() && node0 != node1,
            error: r.err().map(|e| e.to_string()),
        }
    }

    async fn attempt(
        &mut self,
        step: Step,
        lock_timeout: Option<Duration>,
    ) -> Result<Attempt, sqlx::Error> {
        let mut tx = self.conn.begin().await?;
        if let Some(lt) = lock_timeout {
            sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                .bind(pg_interval(lt))
                .execute(&mut *tx)
                .await?;
        }
        // Neither lookup locks the table: the step's lock is the first one this
        // transaction takes on it.
        let scans0 = numscans(&mut tx, step.table).await?;
        let node0 = relfilenode(&mut tx, step.table).await?;
        let t = Instant::now();
        if let Err(e) = sqlx::raw_sql(step.sql).execute(&mut *tx).await {
            tx.rollback().await?;
            return Err(e);
        }
        let took = t.elapsed();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE l.pid = pg_backend_pid() AND l.granted AND c.relname IN ('items', 'customers')",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut held = BTreeMap::new();
        for (table, mode) in rows {
            if let Some(m) = LockMode::parse(&mode) {
                let e = held.entry(table).or_insert(m);
                *e = (*e).max(m);
            }
        }
        let scans1 = numscans(&mut tx, step.table).await?;
        let node1 = relfilenode(&mut tx, step.table).await?;
        tx.commit().await?;
        Ok(Attempt {
            took,
            held,
            table_scans: Some(scans1 - scans0),
            rewrote: node0 != node1,
        })
    }
}

#[derive(Debug, Default)]
struct Attempt {
    took: Duration,
    held: BTreeMap<String, LockMode>,
    table_scans: Option<i64>,
    rewrote: bool,
}

fn outcome(
    step: Step,
    started: Duration,
    ended: Duration,
    a: Attempt,
    attempts: u32,
    timed_out: Vec<(Duration, Duration)>,
) -> StepOutcome {
    StepOutcome {
        step,
        started,
        ended,
        took: a.took,
        attempts,
        timed_out,
        held: a.held,
        table_scans: a.table_scans,
        rewrote: a.rewrote,
        error: None,
    }
}

/// Sequential scans of `table` counted by this backend and not yet flushed to the stats
/// system; the difference across a statement is the scans it did.
async fn numscans(conn: &mut PgConnection, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_stat_get_xact_numscans($1::regclass)")
        .bind(table)
        .fetch_one(conn)
        .await
}

async fn relfilenode(conn: &mut PgConnection, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_relation_filenode($1::regclass)::bigint")
        .bind(table)
        .fetch_one(conn)
        .await
}

/// A connection of its own with `application_name` set (the lock watcher reads it).
pub async fn connect_as(ctx: &LabCtx, application_name: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&ctx.connect_options().application_name(application_name)).await
}
