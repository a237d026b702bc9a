//! Locking and queues: optimistic vs pessimistic, and Postgres as a job queue with SKIP LOCKED.
//!
//! The war story: two requests decrement the same stock and one sale vanishes — both read
//! 10, both wrote 9. Then the job table: eight workers poll it, some jobs run twice and the
//! rest run one at a time however many workers there are. Then the retries: a worker dies
//! mid-job, the job runs again, and the customer is credited twice. And one Monday the queue
//! is slower every minute, until someone finds a psql session that has sat in `BEGIN` since
//! Friday and kills it.
//!
//! The mechanisms, each measured on the lab's Postgres with concurrent clients on their own
//! connections:
//!
//! - **Choosing the lock for the contention you have.** A read-modify-write at read committed
//!   loses updates; an atomic `UPDATE … SET qty = qty - 1` cannot; an optimistic version check
//!   retries when it loses a race; `SELECT … FOR UPDATE` makes the others wait; `NOWAIT` turns
//!   the wait into an error. Contention runs from many rows to one hot row, and the run finds
//!   where waiting starts to beat retrying.
//! - **A queue in a table.** Without a lock two workers take the same job; with `FOR UPDATE`
//!   every worker wants the same oldest row and waits for it; `FOR UPDATE SKIP LOCKED` gives
//!   each worker the oldest job nobody holds.
//! - **At-least-once delivery, made safe.** Leases (a visibility timeout) re-deliver a dead
//!   worker's job; `max_attempts` sends a poison job to a dead-letter table with its error; a
//!   dedup key written in the side effect's transaction makes re-delivery harmless.
//! - **The xmin horizon.** One old snapshot keeps every finished job's dead row and index
//!   entry alive; every claim walks them all.
//! - **Wake-ups.** LISTEN/NOTIFY against polling, enqueue to start.
//!
//! | module | what it holds |
//! |---|---|
//! | [`schema`] | inventory, `jobs` (one table, many queues), side-effect tables, `dead_letter` |
//! | [`inventory`] | the lost update and its four fixes; contention levels; one measured phase |
//! | [`queue`] | claiming with no lock, `FOR UPDATE`, `SKIP LOCKED`; the worker sweep |
//! | [`delivery`] | leases, re-delivery, dead letters, naive vs idempotent consumer, the fault plan |
//! | [`horizon`] | the long transaction, dead tuples, the claim's buffers, the stages of the spiral |
//! | [`wakeup`] | LISTEN/NOTIFY vs polling |
//! | [`interleave`] | pause points and `pg_blocking_pids`, for the transcript-style tests |
//! | [`report`] | findings, tables, charts, notes and the sentence |
//! | this file | the run, step by step |

pub mod delivery;
pub mod horizon;
pub mod interleave;
pub mod inventory;
pub mod queue;
pub mod report;
pub mod schema;
pub mod wakeup;

use std::time::Duration;

use labkit::{Knob, LabCtx, Report, Scale};

use delivery::Consumer;
use inventory::{Contention, Strategy};
use queue::ClaimMode;

/// The finding keys this lab promises (the JSON contract).
pub const FINDING_KEYS: &[&str] = &[
    // the lost update (at high contention: one hot row)
    "lost_updates_read_modify_write",
    "lost_updates_atomic_update",
    "lost_updates_optimistic",
    "lost_updates_pessimistic",
    "lost_updates_nowait",
    "optimistic_retries_per_success_low_contention",
    "optimistic_retries_per_success_high_contention",
    "nowait_retries_per_success_high_contention",
    "optimistic_tps_low_contention",
    "pessimistic_tps_low_contention",
    "optimistic_tps_high_contention",
    "pessimistic_tps_high_contention",
    "atomic_update_tps_high_contention",
    "optimistic_p95_ms_high_contention",
    "pessimistic_p95_ms_high_contention",
    "pessimistic_vs_optimistic_tps_high_contention",
    // the job queue
    "no_lock_double_processed_jobs",
    "for_update_double_processed_jobs",
    "skip_locked_double_processed_jobs",
    "no_lock_jobs_per_s_8_workers",
    "for_update_jobs_per_s_8_workers",
    "skip_locked_jobs_per_s_8_workers",
    "skip_locked_vs_for_update_8_workers",
    // failures
    "redelivered_after_crash",
    "redelivered_while_still_running",
    "dead_lettered_jobs",
    "lost_jobs",
    "duplicate_side_effects_naive_consumer",
    "duplicate_side_effects_idempotent_consumer",
    // the long-transaction death spiral
    "baseline_claim_p95_ms",
    "long_tx_claim_p95_ms",
    "recovered_claim_p95_ms",
    "baseline_claim_server_ms",
    "long_tx_claim_server_ms",
    "long_tx_dead_tuples_peak",
    "long_tx_unremovable_after_vacuum",
    "long_tx_backlog_peak",
    "baseline_claim_buffers",
    "long_tx_claim_buffers",
    "ended_claim_buffers",
    "recovered_claim_buffers",
    // wake-ups
    "notify_pickup_p50_ms",
    "poll_pickup_p50_ms",
    "poll_1s_pickup_p50_ms",
];

/// The `locking-and-queues` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockingAndQueues;

/// The run's sizes and timings, by scale and load knobs.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Inventory rows at low contention (the hot level uses one).
    pub rows: u64,
    pub lost_update: inventory::Shape,
    /// Client counts for optimistic vs FOR UPDATE on one hot row (the crossover sweep).
    pub crossover_clients: Vec<usize>,
    /// Worker counts of the queue sweep (8 is always among them).
    pub worker_counts: Vec<usize>,
    pub sweep: queue::Sweep,
    pub delivery: delivery::Plan,
    pub spiral: horizon::Spiral,
    pub wakeup_rate: f64,
    pub wakeup_duration: Duration,
}

impl Workload {
    pub fn for_ctx(ctx: &LabCtx) -> Self {
        let s = ctx.scale;
        let duration = ctx.duration(s.pick(
            Duration::from_millis(150),
            Duration::from_millis(400),
            Duration::from_secs(3),
        ));
        let warmup = ctx.warmup(s.pick(
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(500),
        ));
        let secs = |smoke: f64, default: f64, large: f64| {
            Duration::from_secs_f64(s.pick(smoke, default, large))
        };
        Self {
            rows: s.pick(1_000, 10_000, 100_000),
            lost_update: inventory::Shape {
                clients: ctx.clients(16),
                duration,
                warmup,
            },
            crossover_clients: match s {
                Scale::Smoke => vec![2, 32],
                Scale::Default => vec![2, 8, 32],
                Scale::Large => vec![2, 4, 8, 16, 32, 64],
            },
            worker_counts: match s {
                Scale::Smoke => vec![1, 8],
                Scale::Default => vec![1, 2, 4, 8, 16],
                Scale::Large => vec![1, 2, 4, 8, 16, 32],
            },
            sweep: queue::Sweep {
                duration,
                warmup,
                fill: s.pick(5_000, 20_000, 200_000),
                downstream: queue::DOWNSTREAM_CALL,
            },
            delivery: delivery::Plan {
                jobs: s.pick(60, 400, 4_000),
                rate_per_s: s.pick(200.0, 400.0, 1_000.0),
                workers: 4,
                lease: Duration::from_millis(150),
                backoff: Duration::from_millis(20),
                seed: ctx.seed,
            },
            spiral: horizon::Spiral {
                backlog: s.pick(200, 500, 2_000),
                rate_per_s: ctx.rate(s.pick(500.0, 1_000.0, 1_000.0)),
                workers: 4,
                stages: [
                    secs(0.5, 2.0, 10.0),
                    secs(1.0, 8.0, 120.0),
                    secs(0.3, 1.0, 5.0),
                    secs(0.5, 2.0, 10.0),
                ],
                bucket: secs(0.25, 0.5, 2.0),
            },
            wakeup_rate: 20.0,
            wakeup_duration: secs(1.0, 3.0, 10.0),
        }
    }
}

/// Everything the run measured, for [`report::build`].
#[derive(Debug)]
pub struct Measured {
    pub lost_update: Vec<inventory::PhaseRun>,
    pub crossover: Vec<inventory::PhaseRun>,
    pub sweep: Vec<queue::SweepPoint>,
    pub deliveries: Vec<(Consumer, delivery::DeliveryRun)>,
    pub spiral: horizon::SpiralRun,
    pub wakeups: Vec<wakeup::WakeupRun>,
}

#[labkit::async_trait]
impl labkit::Lab for LockingAndQueues {
    fn id(&self) -> &'static str {
        "locking-and-queues"
    }

    fn title(&self) -> &'static str {
        "Locking and queues: optimistic vs pessimistic, and Postgres as a job queue with SKIP LOCKED"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        let w = Workload::for_ctx(ctx);
        schema::create(&ctx.pg).await?;

        // 1. The lost update, from many rows to one hot row: every strategy at every level,
        //    each client on its own connection, the stock audited after each phase.
        let most = w
            .crossover_clients
            .iter()
            .copied()
            .chain([w.lost_update.clients])
            .max();
        let clients = ctx.new_pool(most.unwrap_or(16) as u32).await?;
        let levels = Contention::levels(w.rows);
        let mut lost_update = Vec::new();
        for level in levels {
            for strategy in Strategy::ALL {
                let run = inventory::run_phase(
                    &ctx.pg,
                    &clients,
                    strategy,
                    level,
                    w.lost_update,
                    ctx.seed,
                )
                .await?;
                lost_update.push(run);
            }
        }
        //    The crossover along the other axis: one hot row, more and more clients.
        let mut crossover = Vec::new();
        for &n in &w.crossover_clients {
            let shape = inventory::Shape {
                clients: n,
                ..w.lost_update
            };
            for strategy in [Strategy::Optimistic, Strategy::Pessimistic] {
                let run =
                    inventory::run_phase(&ctx.pg, &clients, strategy, levels[3], shape, ctx.seed)
                        .await?;
                crossover.push(run);
            }
        }
        clients.close().await;

        // 2. The job queue: the same worker loop with three claims, 1 … 16 workers.
        ctx.ignores(
            Knob::Clients,
            "the queue scenarios sweep their own worker counts (1 … 16) and use 4 workers for \
             failures and the death spiral, and the crossover sweeps its own client counts; \
             --clients sets the clients of the lost-update table",
        );
        let max_workers = *w.worker_counts.iter().max().unwrap_or(&8);
        let workers = ctx.new_pool(max_workers as u32).await?;
        let mut sweep = Vec::new();
        for mode in ClaimMode::ALL {
            for &n in &w.worker_counts {
                sweep.push(queue::run_point(&ctx.pg, &workers, mode, n, w.sweep).await?);
            }
        }

        // 3. Failures: the same faults, delivered to a naive and to an idempotent consumer.
        schema::reset_queues(&ctx.pg).await?;
        let mut deliveries = Vec::new();
        for consumer in [Consumer::Naive, Consumer::Idempotent] {
            let queue = format!("payments_{}", consumer.key());
            let run = delivery::run(&ctx.pg, &workers, consumer, &queue, w.delivery).await?;
            deliveries.push((consumer, run));
        }

        // 4. The long-transaction death spiral: baseline, one snapshot held, released, VACUUM.
        let spiral = horizon::run(&ctx.pg, &workers, ctx.database_url(), w.spiral).await?;
        workers.close().await;

        // 5. Wake-ups: LISTEN/NOTIFY vs polling every 100 ms and every second.
        schema::reset_queues(&ctx.pg).await?;
        let wake_pool = ctx.new_pool(8).await?;
        let wakeups = wakeup::run(&wake_pool, w.wakeup_rate, w.wakeup_duration).await?;
        wake_pool.close().await;

        let measured = Measured {
            lost_update,
            crossover,
            sweep,
            deliveries,
            spiral,
            wakeups,
        };
        Ok(report::build(ctx.report(self.title()), &w, &measured))
    }
}
