//! Scenario 1 — the lock queue: a 2 ms `ALTER TABLE` takes the site down.
//!
//! An analytics query has been reading `items` for a while (it holds ACCESS SHARE). The
//! deploy runs `ALTER TABLE items ADD COLUMN note text` — metadata only, normally a couple
//! of milliseconds — which needs ACCESS EXCLUSIVE, conflicts with the reader, and waits.
//! Postgres's lock queue is first come, first served: every app query that arrives after
//! the ALTER wants ACCESS SHARE or ROW EXCLUSIVE, which conflict with the ALTER's *pending*
//! request, so they queue behind it — behind a statement that has not even started. The
//! pool's connections fill up with waiting requests, the next requests wait for a
//! connection, and they time out. When the reader finishes, the ALTER runs in 2 ms and the
//! queue drains.
//!
//! The fix ([`Guard`]): `lock_timeout` makes the ALTER give up after 50 ms (SQLSTATE
//! 55P03), releasing the queue behind it; it retries with backoff and lands after the
//! reader is gone. The app sees at most one `lock_timeout` of queueing per attempt.

use std::time::Duration;

use sqlx::PgConnection;

use crate::lock_watch::{READER, wait_until_holds};
use crate::migration::{Guard, Migrator, Step, StepOutcome, connect_as};
use crate::observed::{Observed, Stage, during_traffic};

/// The migration: the cheapest DDL there is.
pub const DDL: Step = Step::new(
    "ADD COLUMN note text",
    "items",
    "ALTER TABLE items ADD COLUMN note text",
);
const UNDO: &str = "ALTER TABLE items DROP COLUMN note";

/// The timeline, as fractions of the phase: the reader starts, the DDL is issued behind
/// it, the reader runs for a while; the rest of the phase shows the recovery.
pub const READER_STARTS: f64 = 0.10;
pub const DDL_ISSUED: f64 = 0.20;
pub const READER_HOLDS: f64 = 0.45;

/// What happened besides the traffic.
#[derive(Debug, Clone)]
pub struct QueueOutcome {
    pub reader_started: Duration,
    pub reader_ended: Duration,
    pub ddl: StepOutcome,
}

/// Run the story: unguarded (`guard = None`) or with `lock_timeout` and retries.
pub async fn run(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    guard: Option<Guard>,
) -> anyhow::Result<Observed<QueueOutcome>> {
    let mut reader = connect_as(stage.ctx, READER).await?;
    let mut mig = Migrator::connect(stage.ctx).await?;
    let observed = during_traffic(stage, label, planned, |clock| async move {
        let reading = async {
            clock.until(READER_STARTS).await;
            let started = clock.now();
            long_read(&mut reader, clock.at(READER_HOLDS)).await?;
            Ok::<_, sqlx::Error>((started, clock.now()))
        };
        let migrating = async {
            clock.until(READER_STARTS).await;
            // Observed, not assumed: the DDL goes out once the reader holds its lock.
            wait_until_holds(mig.conn(), READER, "items").await?;
            clock.until(DDL_ISSUED).await;
            let ddl = match guard {
                None => mig.run(DDL, &clock).await?,
                Some(g) => mig.run_guarded(DDL, &g, &clock).await?,
            };
            Ok::<_, anyhow::Error>(ddl)
        };
        let (read, ddl) = tokio::join!(reading, migrating);
        let (reader_started, reader_ended) = read?;
        Ok(QueueOutcome {
            reader_started,
            reader_ended,
            ddl: ddl?,
        })
    })
    .await?;
    sqlx::raw_sql(UNDO).execute(&stage.ctx.pg).await?;
    Ok(observed)
}

/// The analytics query: one statement that reads the whole table and then keeps its
/// ACCESS SHARE lock for `hold` (a long report, a `pg_dump`, an idle-in-transaction
/// session — anything holding even the weakest lock).
pub async fn long_read(conn: &mut PgConnection, hold: Duration) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT (SELECT sum(amount_cents) FROM items), pg_sleep($1)")
        .bind(hold.as_secs_f64())
        .execute(conn)
        .await?;
    Ok(())
}
