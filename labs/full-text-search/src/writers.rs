//! The order traffic that keeps flowing while the migration runs, with one latency histogram
//! per migration step.
//!
//! Each writer loops: re-order an existing order (an `INSERT … SELECT` of its description, 80 %)
//! or change the delivery note of an order it placed earlier (an `UPDATE` of `description`,
//! 20 %), then thinks for ~5 ms. Writers only ever change their own new orders, so the seeded
//! rows stay as the seed made them and the lab can delete the writers' orders afterwards.
//!
//! Each write's latency goes into the histogram of the step during which it *completed*
//! ([`labkit::Recorder`]): a write queued behind a step's lock completes when that step lets
//! go, so it counts against the step that held it, even if it was sent a moment before.
//!
//! Hand-written rather than [`labkit::closed_loop`]: the steps run for as long as they take
//! (a backfill, an index build), and labkit's closed loop stops after a count or a fixed
//! time, not when another future finishes.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use labkit::{LatencySummary, Recorder};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::vocabulary::NOTES;

/// At most this many steps per run.
const MAX_STEPS: usize = 16;

/// A re-order: the same description, a new row (the trigger, once it exists, fills `search`).
const REORDER: &str = "INSERT INTO orders (customer_id, created_at, description) \
     SELECT customer_id, now(), description FROM orders WHERE id = $1 RETURNING id";

/// A changed delivery note: rewrites `description` (and fires `UPDATE OF description`).
const EDIT_NOTE: &str = "UPDATE orders \
     SET description = regexp_replace(description, ' — .*$', '') || ' — ' || $2 WHERE id = $1";

/// What the writers saw during one step.
#[derive(Debug, Clone)]
pub struct StepLoad {
    pub name: String,
    pub elapsed: Duration,
    pub summary: LatencySummary,
    pub recorder: Recorder,
}

/// What the writers saw, step by step.
#[derive(Debug, Clone)]
pub struct WriterSteps {
    pub steps: Vec<StepLoad>,
    /// The first failed write, if any (writes are never expected to fail here).
    pub first_error: Option<String>,
}

impl WriterSteps {
    /// The steps whose names `pick` accepts, merged into one summary.
    pub fn merged(&self, pick: impl Fn(&str) -> bool) -> LatencySummary {
        let mut rec = Recorder::new();
        let mut elapsed = Duration::ZERO;
        for s in self.steps.iter().filter(|s| pick(&s.name)) {
            rec.merge(&s.recorder);
            elapsed += s.elapsed;
        }
        rec.summary(elapsed)
    }

    pub fn get(&self, name: &str) -> Option<&StepLoad> {
        self.steps.iter().find(|s| s.name == name)
    }
}

type WorkerOut = (Vec<Recorder>, Option<String>);

/// Running writers. Dropping it aborts them (the run was interrupted).
pub struct Writers {
    stop: Arc<AtomicBool>,
    step: Arc<AtomicUsize>,
    steps: Vec<(String, Instant)>,
    tasks: JoinSet<WorkerOut>,
}

impl Writers {
    /// Start `clients` writers re-ordering orders with ids in `sources`, in step `first_step`.
    pub fn start(
        pool: &PgPool,
        clients: usize,
        sources: RangeInclusive<i64>,
        seed: u64,
        first_step: &str,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let step = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for worker in 0..clients.max(1) {
            let (pool, stop, step) = (pool.clone(), stop.clone(), step.clone());
            let sources = sources.clone();
            let mut rng =
                StdRng::seed_from_u64(seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9));
            tasks.spawn(async move {
                let mut recs = vec![Recorder::new(); MAX_STEPS];
                let mut first_error = None;
                let mut placed: Vec<i64> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let edit = !placed.is_empty() && rng.random_bool(0.2);
                    let t0 = Instant::now();
                    let result = if edit {
                        let id = placed[rng.random_range(0..placed.len())];
                        let note = NOTES[rng.random_range(0..NOTES.len())];
                        sqlx::query(EDIT_NOTE)
                            .bind(id)
                            .bind(note)
                            .execute(&pool)
                            .await
                            .map(|_| ())
                    } else {
                        let source = rng.random_range(sources.clone());
                        sqlx::query_scalar(REORDER)
                            .bind(source)
                            .fetch_one(&pool)
                            .await
                            .map(|id: i64| placed.push(id))
                    };
                    let at = step.load(Ordering::Relaxed).min(MAX_STEPS - 1);
                    match result {
                        Ok(_) => recs[at].record(t0.elapsed()),
                        Err(e) => {
                            recs[at].record_error();
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    let think = Duration::from_micros(rng.random_range(2_500..7_500));
                    tokio::time::sleep(think).await;
                }
                (recs, first_error)
            });
        }
        Self {
            stop,
            step,
            steps: vec![(first_step.to_string(), Instant::now())],
            tasks,
        }
    }

    /// The next step begins now.
    pub fn step(&mut self, name: &str) {
        self.steps.push((name.to_string(), Instant::now()));
        self.step.store(self.steps.len() - 1, Ordering::Relaxed);
    }

    /// Keep the current step open until it has lasted `min`: even an instant step (a
    /// catalog-only `ALTER`) then has writes to show, including the ones its lock held up.
    pub async fn hold(&self, min: Duration) {
        if let Some((_, start)) = self.steps.last() {
            tokio::time::sleep(min.saturating_sub(start.elapsed())).await;
        }
    }

    /// Stop the writers and summarise each step.
    pub async fn stop(mut self) -> WriterSteps {
        let end = Instant::now();
        self.stop.store(true, Ordering::Relaxed);
        let mut merged = vec![Recorder::new(); MAX_STEPS];
        let mut first_error = None;
        while let Some(done) = self.tasks.join_next().await {
            if let Ok((recs, err)) = done {
                for (m, r) in merged.iter_mut().zip(&recs) {
                    m.merge(r);
                }
                if first_error.is_none() {
                    first_error = err;
                }
            }
        }
        let ends: Vec<Instant> = self
            .steps
            .iter()
            .skip(1)
            .map(|(_, t)| *t)
            .chain([end])
            .collect();
        let steps = self
            .steps
            .iter()
            .zip(ends)
            .zip(merged)
            .map(|(((name, start), end), recorder)| {
                let elapsed = end - *start;
                StepLoad {
                    name: name.clone(),
                    elapsed,
                    summary: recorder.summary(elapsed),
                    recorder,
                }
            })
            .collect();
        WriterSteps { steps, first_error }
    }
}
