//! Drift: a client walks the pages while the shop keeps writing. Every row that existed
//! before the walk and was still there after it should be served exactly once. Offset
//! counts positions, so rows inserted at the head push served rows onto the next page
//! (duplicates) and deleted rows pull unseen rows onto the previous one (misses). Keyset
//! counts from the last key served, which writes cannot move.
//!
//! Two versions:
//! - scripted: between page fetches, insert 3 orders at the head / delete 2 served ones,
//!   alternately. Exact, repeatable numbers (the tests assert the same effect over HTTP).
//! - concurrent: a writer task inserts and deletes on its own clock while both walkers run.
//!   The numbers the report quotes; they vary a little from run to run.
//!
//! Walkers call the same page functions as the HTTP handlers, without HTTP and without the
//! offset endpoint's `COUNT(*)`, so the walk is fast and the writer is not starved.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::filter::Filter;
use crate::keyset::SortKey;
use crate::{keyset, offset, schema};

/// A walker that fetches one page per `step`.
#[derive(Debug)]
pub struct Walker {
    method: Method,
    limit: i64,
    pages: i64,
    after: Option<SortKey>,
    /// Stop once a page reaches this key (the end of the range the walk must cover).
    horizon: SortKey,
    done: bool,
    pub served: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Offset,
    Keyset,
}

impl Walker {
    pub fn new(method: Method, limit: i64, horizon: SortKey) -> Self {
        Self {
            method,
            limit,
            pages: 0,
            after: None,
            horizon,
            done: false,
            served: Vec::new(),
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// Fetch the next page; returns false once the walk has passed the horizon.
    pub async fn step(&mut self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        if self.done {
            return Ok(false);
        }
        let rows = match self.method {
            Method::Offset => {
                offset::page(pool, Filter::ALL, self.limit, self.pages * self.limit).await?
            }
            Method::Keyset => keyset::page(pool, Filter::ALL, self.after, self.limit).await?,
        };
        self.pages += 1;
        self.served.extend(rows.iter().map(|o| o.id));
        match rows.last() {
            Some(last) if rows.len() as i64 == self.limit && last.sort_key() > self.horizon => {
                self.after = Some(last.sort_key());
            }
            _ => self.done = true,
        }
        Ok(!self.done)
    }
}

/// A walk checked against the rows that existed the whole time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub pages: i64,
    pub served: usize,
    /// Extra servings of a row already served.
    pub duplicates: usize,
    /// Rows that existed before and after the walk, inside its range, never served.
    pub misses: usize,
}

/// Compare `walker` with `stable` (the range's rows before the walk minus those deleted).
pub fn tally(walker: &Walker, stable: &HashSet<i64>) -> Tally {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for id in &walker.served {
        if !seen.insert(*id) {
            duplicates += 1;
        }
    }
    Tally {
        pages: walker.pages,
        served: walker.served.len(),
        duplicates,
        misses: stable.iter().filter(|id| !seen.contains(id)).count(),
    }
}

/// The range a walk must cover: the first `pages` pages as they are now.
async fn range(pool: &PgPool, pages: i64, limit: i64) -> anyhow::Result<(Vec<i64>, SortKey)> {
    let ids = schema::ids_in_order(pool, pages * limit).await?;
    let horizon = keyset::key_at(pool, pages * limit - 1)
        .await?
        .ok_or_else(|| anyhow::anyhow!("table smaller than the walk"))?;
    Ok((ids, horizon))
}

#[derive(Debug)]
pub struct DriftRun {
    pub pages: i64,
    pub limit: i64,
    pub inserted: usize,
    pub deleted: usize,
    pub elapsed: Duration,
    pub offset: Tally,
    pub keyset: Tally,
}

/// Scripted interleaving: both walkers fetch a page, then the shop writes — 3 inserts at the
/// head after odd steps, 2 deletes of already-served rows (from page 1) after even steps.
pub async fn scripted(pool: &PgPool, pages: i64, limit: i64) -> anyhow::Result<DriftRun> {
    let started = Instant::now();
    let (before_ids, horizon) = range(pool, pages, limit).await?;
    let before: HashSet<i64> = before_ids.iter().copied().collect();
    let mut stable = before.clone();
    let mut off = Walker::new(Method::Offset, limit, horizon);
    let mut key = Walker::new(Method::Keyset, limit, horizon);
    let (mut inserted, mut deleted) = (0, 0);
    let mut next_delete = before_ids.iter().copied();
    let mut step = 0;
    while !(off.done() && key.done()) {
        off.step(pool).await?;
        key.step(pool).await?;
        step += 1;
        if step % 2 == 1 {
            for _ in 0..3 {
                schema::insert_at_head(pool, 1).await?;
                inserted += 1;
            }
        } else {
            let ids: Vec<i64> = next_delete.by_ref().take(2).collect();
            deleted += schema::delete(pool, &ids).await? as usize;
            for id in ids {
                stable.remove(&id);
            }
        }
    }
    Ok(DriftRun {
        pages,
        limit,
        inserted,
        deleted,
        elapsed: started.elapsed(),
        offset: tally(&off, &stable),
        keyset: tally(&key, &stable),
    })
}

/// Both walkers run flat out while a writer inserts one order (for one of `tenants`) at the
/// head every `insert_every` and, every `delete_every`, deletes `delete_batch` random rows of
/// the range (a clean-up job). Deletes hit rows behind and ahead of the walkers alike.
pub async fn concurrent(
    pool: &PgPool,
    pages: i64,
    limit: i64,
    tenants: i32,
    seed: u64,
) -> anyhow::Result<(DriftRun, WriterPlan)> {
    let plan = WriterPlan::default();
    let (before_ids, horizon) = range(pool, pages, limit).await?;
    let before: HashSet<i64> = before_ids.iter().copied().collect();
    let mut deletable = before_ids.clone();
    deletable.shuffle(&mut StdRng::seed_from_u64(seed));

    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let writer = write_until_stopped(pool.clone(), plan, deletable, tenants, seed, stop_rx);
    let walk = |method| {
        let pool = pool.clone();
        async move {
            let mut w = Walker::new(method, limit, horizon);
            while w.step(&pool).await? {}
            Ok::<_, sqlx::Error>(w)
        }
    };
    let walkers = async {
        let walked = tokio::try_join!(walk(Method::Offset), walk(Method::Keyset));
        let _ = stop_tx.send(true);
        walked
    };
    // Walkers and writer run concurrently in this task, not in a spawned one: a cancelled run
    // (Ctrl-C) leaves no writer behind. The writer stops when both walks are done.
    let (walked, written) = tokio::join!(walkers, writer);
    let elapsed = started.elapsed();
    let (off, key) = walked?;
    let (inserted, deleted_ids) = written?;
    let mut stable = before.clone();
    for id in &deleted_ids {
        stable.remove(id);
    }
    Ok((
        DriftRun {
            pages,
            limit,
            inserted,
            deleted: deleted_ids.len(),
            elapsed,
            offset: tally(&off, &stable),
            keyset: tally(&key, &stable),
        },
        plan,
    ))
}

/// The concurrent writer's schedule.
#[derive(Debug, Clone, Copy)]
pub struct WriterPlan {
    pub insert_every: Duration,
    pub delete_every: Duration,
    pub delete_batch: usize,
}

impl Default for WriterPlan {
    /// A busy shop: ~500 orders a second, and a clean-up job removing 5 orders every 50 ms.
    fn default() -> Self {
        Self {
            insert_every: Duration::from_millis(2),
            delete_every: Duration::from_millis(50),
            delete_batch: 5,
        }
    }
}

async fn write_until_stopped(
    pool: PgPool,
    plan: WriterPlan,
    deletable: Vec<i64>,
    tenants: i32,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(usize, Vec<i64>), sqlx::Error> {
    let mut next = 0;
    let mut inserted = 0;
    let mut deleted = Vec::new();
    let mut inserts = tokio::time::interval(plan.insert_every);
    let mut deletes = tokio::time::interval(plan.delete_every);
    deletes.tick().await; // the first tick is immediate; start deleting one period in
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = inserts.tick() => {
                schema::insert_at_head(&pool, rng.random_range(1..=tenants)).await?;
                inserted += 1;
            }
            _ = deletes.tick() => {
                let batch: Vec<i64> = deletable.iter().skip(next).take(plan.delete_batch).copied().collect();
                next += batch.len();
                schema::delete(&pool, &batch).await?;
                deleted.extend(batch);
            }
        }
    }
    Ok((inserted, deleted))
}
