//! Zero-downtime migrations: the lock queue, CONCURRENTLY, NOT VALID and expand/contract.
//!
//! The war story: a deploy runs `ALTER TABLE items ADD COLUMN note text` — metadata only,
//! 2 ms of work. It needs ACCESS EXCLUSIVE, and one long analytics query holds ACCESS SHARE,
//! so it waits. Postgres's lock queue is first come, first served: every app query that
//! arrives after the ALTER conflicts with its *pending* request and queues behind it. The
//! pool fills with waiting requests, p99 goes vertical, requests time out — the site is down
//! for a migration that would have taken 2 ms. Its cousins: `CREATE INDEX` blocking every
//! write for the length of the build, a volatile default rewriting the whole table,
//! a constraint scanning it under a strong lock, a one-statement backfill row-locking it,
//! a one-step rename breaking the app version still running.
//!
//! The mechanism: every DDL takes one of eight table lock modes (the docs' conflict table,
//! [`lock_modes`]); what the app feels is whether that mode conflicts with its own
//! (ROW EXCLUSIVE for writes, ACCESS SHARE for reads) and for how long it is held *or
//! waited for*. The safe versions shorten the strong lock to milliseconds, bound the wait
//! (`lock_timeout` + retry), or take a weaker mode (`CONCURRENTLY`, `NOT VALID` +
//! `VALIDATE`), and split what cannot be made short (backfill batches, expand/contract).
//!
//! The lab runs each migration while the app serves open-loop traffic on a table of a
//! million rows (default scale), watches the lock queue in `pg_locks`/`pg_blocking_pids`,
//! and reports what the users saw.
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | `items` and `customers`, the seed, relfilenode and size lookups |
//! | [`app`] | the app: its requests, pool, client timeout, open-loop traffic |
//! | [`lock_modes`] | the docs' lock-conflict table, and a check of it against the server |
//! | [`lock_watch`] | the lock-queue watcher (`pg_locks`, `pg_blocking_pids`, sampled) |
//! | [`migration`] | running a step: its lock, scans, rewrite; `lock_timeout` + retry ([`migration::Guard`]) |
//! | [`observed`] | traffic + migration + watcher on one clock |
//! | [`lock_queue`] | 1. the ALTER behind a long reader, and with `lock_timeout` |
//! | [`indexes`] | 2. `CREATE INDEX` vs `CONCURRENTLY`; the failed build left INVALID |
//! | [`add_column`] | 3. constant vs volatile default |
//! | [`constraints`] | 4. direct vs `NOT VALID` + `VALIDATE`; `SET NOT NULL` after a CHECK |
//! | [`backfill`] | 5. one UPDATE vs keyset batches |
//! | [`rename`] | 6. one-step rename vs expand/contract with two app versions live |
//! | [`report`] | findings, tables, charts, notes and the sentence |
//! | this file | the run, step by step |

pub mod add_column;
pub mod app;
pub mod backfill;
pub mod constraints;
pub mod indexes;
pub mod lock_modes;
pub mod lock_queue;
pub mod lock_watch;
pub mod migration;
pub mod observed;
pub mod rename;
pub mod report;
pub mod schema;

use std::time::Duration;

use labkit::{Knob, LabCtx, Report};

use crate::app::App;
use crate::backfill::Batching;
use crate::migration::{Guard, connect_as};
use crate::observed::{Stage, during_traffic};
use crate::schema::Dataset;

pub use crate::report::FINDING_KEYS;

/// The `zero-downtime-migrations` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroDowntimeMigrations;

/// The run's shape: table sizes, the app's load, and how long each phase's traffic runs
/// at least (`--duration` sets them all to one value). Traffic goes on past that until the
/// migration has finished, however long it takes on this machine ([`app::App::traffic`]).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub data: Dataset,
    pub rate: f64,
    pub connections: u32,
    pub baseline: Duration,
    pub lock_queue: Duration,
    pub index: Duration,
    pub add_constant: Duration,
    pub add_volatile: Duration,
    pub constraints: Duration,
    pub backfill_single: Duration,
    pub backfill_batched: Duration,
    pub rename: Duration,
    pub batching: Batching,
}

impl Plan {
    pub fn new(ctx: &LabCtx) -> Self {
        let s = ctx.scale;
        let secs = |smoke: f64, default: f64, large: f64| {
            ctx.duration(Duration::from_secs_f64(s.pick(smoke, default, large)))
        };
        let data = Dataset::for_scale(s);
        let rows_per_batch = s.pick(1_000, 10_000, 20_000);
        let batches = (data.items as i64 / rows_per_batch).max(1) as u32;
        Self {
            data,
            rate: ctx.rate(s.pick(100.0, 200.0, 300.0)),
            connections: ctx.clients(16) as u32,
            baseline: secs(0.5, 1.5, 3.0),
            lock_queue: secs(1.0, 4.0, 8.0),
            index: secs(0.6, 2.0, 4.0),
            add_constant: secs(0.4, 1.0, 2.0),
            add_volatile: secs(0.6, 2.0, 4.0),
            constraints: secs(0.8, 2.5, 5.0),
            backfill_single: secs(0.8, 3.0, 6.0),
            backfill_batched: secs(0.8, 3.0, 6.0),
            rename: secs(1.0, 3.0, 6.0),
            batching: Batching {
                rows_per_batch,
                pause: Duration::from_millis(10),
                vacuum_every: (batches / 4).max(1),
            },
        }
    }
}

/// Everything the run measured, for [`report::build`].
pub struct Results {
    pub plan: Plan,
    pub seeded: schema::Seeded,
    pub conflicts: Vec<lock_modes::Checked>,
    pub baseline: observed::Observed<()>,
    pub queue: observed::Observed<lock_queue::QueueOutcome>,
    pub queue_guarded: observed::Observed<lock_queue::QueueOutcome>,
    pub index: observed::Observed<migration::StepOutcome>,
    pub index_concurrently: observed::Observed<migration::StepOutcome>,
    pub failed_build: observed::Observed<indexes::FailedBuild>,
    pub add_constant: observed::Observed<migration::StepOutcome>,
    pub add_volatile: observed::Observed<migration::StepOutcome>,
    pub direct: observed::Observed<Vec<migration::StepOutcome>>,
    pub staged: observed::Observed<Vec<migration::StepOutcome>>,
    pub backfill_single: observed::Observed<backfill::Backfill>,
    pub backfill_batched: observed::Observed<backfill::Backfill>,
    pub rename_one_step: observed::Observed<rename::OneStep>,
    pub expand_contract: observed::Observed<rename::ExpandContract>,
}

#[labkit::async_trait]
impl labkit::Lab for ZeroDowntimeMigrations {
    fn id(&self) -> &'static str {
        "zero-downtime-migrations"
    }

    fn title(&self) -> &'static str {
        "Zero-downtime migrations: the lock queue, CONCURRENTLY, NOT VALID and expand/contract"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        ctx.ignores(
            Knob::Warmup,
            "every phase runs on the same warm app pool, after a measured baseline phase; \
             there is no per-phase warm-up to set",
        );
        let plan = Plan::new(ctx);
        let guard = Guard {
            seed: ctx.seed,
            ..Guard::default()
        };

        // The live table, and the docs' lock-conflict table asked of this server.
        let seeded = schema::create(&ctx.pg, plan.data, ctx.seed).await?;
        let conflicts = {
            let (mut t1, mut t2) = (
                connect_as(ctx, "zdm-t1").await?,
                connect_as(ctx, "zdm-t2").await?,
            );
            lock_modes::check_against_server(&mut t1, &mut t2, "items").await?
        };
        let app = App::connect(ctx, "zdm-app", plan.connections, &app::ITEMS, plan.data).await?;
        let stage = Stage {
            ctx,
            app,
            rate: plan.rate,
            connections: plan.connections,
            data: plan.data,
        };

        // 0. The app with nothing running: what "normal" looks like.
        let baseline = during_traffic(
            &stage,
            "0. baseline, no migration",
            plan.baseline,
            |_| async { Ok(()) },
        )
        .await?;

        // 1. A 2 ms ALTER behind a long reader; then the same with lock_timeout + retries.
        let queue = lock_queue::run(
            &stage,
            "1a. ALTER behind a long reader",
            plan.lock_queue,
            None,
        )
        .await?;
        let queue_guarded = lock_queue::run(
            &stage,
            "1b. ALTER with lock_timeout + retries",
            plan.lock_queue,
            Some(guard),
        )
        .await?;

        // 2. Index builds under write traffic; a concurrent unique build that fails.
        let index = indexes::build(
            &stage,
            "2a. CREATE INDEX",
            plan.index,
            indexes::CREATE_INDEX,
        )
        .await?;
        let index_concurrently = indexes::build(
            &stage,
            "2b. CREATE INDEX CONCURRENTLY",
            plan.index,
            indexes::CREATE_INDEX_CONCURRENTLY,
        )
        .await?;
        let failed_build =
            indexes::failed_unique_build(&stage, "2c. failed unique build, repaired", plan.index)
                .await?;

        // 3. ADD COLUMN with a constant default, then a volatile one.
        let add_constant = add_column::add(
            &stage,
            "3a. ADD COLUMN, constant default",
            plan.add_constant,
            add_column::CONSTANT_DEFAULT,
        )
        .await?;
        let add_volatile = add_column::add(
            &stage,
            "3b. ADD COLUMN, volatile default",
            plan.add_volatile,
            add_column::VOLATILE_DEFAULT,
        )
        .await?;

        // 4. CHECK, FOREIGN KEY and NOT NULL: directly, then NOT VALID + VALIDATE.
        let direct = constraints::apply(
            &stage,
            "4a. constraints added directly",
            plan.constraints,
            &constraints::DIRECT,
            None,
            true,
        )
        .await?;
        let staged = constraints::apply(
            &stage,
            "4b. NOT VALID + VALIDATE",
            plan.constraints,
            &constraints::STAGED,
            Some(guard),
            false,
        )
        .await?;

        // 5. Backfill a new column: one UPDATE, then keyset batches.
        let backfill_single = backfill::run(
            &stage,
            "5a. backfill, one UPDATE",
            plan.backfill_single,
            None,
        )
        .await?;
        let backfill_batched = backfill::run(
            &stage,
            "5b. backfill, keyset batches",
            plan.backfill_batched,
            Some(plan.batching),
        )
        .await?;

        // 6. Rename a column with two app versions live: one step, then expand/contract.
        let rename_one_step =
            rename::one_step(&stage, "6a. one-step RENAME", plan.rename, guard).await?;
        let expand_contract = rename::expand_contract(
            &stage,
            "6b. expand/contract",
            plan.rename,
            guard,
            plan.batching.rows_per_batch,
        )
        .await?;
        stage.app.pool.close().await;

        Ok(report::build(
            ctx,
            self.title(),
            Results {
                plan,
                seeded,
                conflicts,
                baseline,
                queue,
                queue_guarded,
                index,
                index_concurrently,
                failed_build,
                add_constant,
                add_volatile,
                direct,
                staged,
                backfill_single,
                backfill_batched,
                rename_one_step,
                expand_contract,
            },
        ))
    }
}
