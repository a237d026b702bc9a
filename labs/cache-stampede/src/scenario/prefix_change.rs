//! The deploy that changed the key prefix: keys are `v1:account:<id>` until a release
//! bumps the version to `v2:` (a new serialization format, say). Every key is new at once,
//! the warm cache is worthless, and the hit rate starts again from zero.
//!
//! The cut-over here is instant (all readers switch together); a rolling deploy spreads
//! the same drop over the rollout, with old and new instances filling two copies.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labkit::{Bound, ClosedLoop, LabCtx, Sample};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;

use crate::cache_aside;
use crate::entry::{Entry, Served};
use crate::ledger::{all_accounts, load_account};

#[derive(Debug, Clone, Copy)]
pub struct PrefixPlan {
    pub accounts: u64,
    pub readers: usize,
    pub think: Duration,
    pub before: Duration,
    pub after: Duration,
    pub ttl: Duration,
    pub zipf_s: f64,
}

#[derive(Debug, Clone)]
pub struct PrefixResult {
    pub hit_rate_before: f64,
    /// The first second after the version bump.
    pub hit_rate_first_second: f64,
    /// The last second of the run.
    pub hit_rate_last_second: f64,
    pub db_loads_per_s_before: f64,
    pub db_loads_per_s_first_second: f64,
    pub hit_rate_series: Vec<(f64, f64)>,
}

pub async fn run(ctx: &LabCtx, plan: PrefixPlan) -> anyhow::Result<PrefixResult> {
    let key_for = |version: u32, id: i32| ctx.key(&format!("v{version}:account:{id}"));

    // A cache that has been warm for hours: every account under v1.
    let mut redis = ctx.redis.clone();
    let mut pipe = redis::pipe();
    for account in all_accounts(&ctx.pg).await? {
        let id = account.id;
        let body = serde_json::to_string(&Entry::new(account, Duration::ZERO, plan.ttl))?;
        pipe.cmd("SET")
            .arg(key_for(1, id))
            .arg(body)
            .arg("PX")
            .arg(plan.ttl.as_millis() as u64)
            .ignore();
    }
    pipe.query_async::<()>(&mut redis).await?;

    let version = Arc::new(AtomicU32::new(1));
    let zipf = Zipf::new(plan.accounts as f64, plan.zipf_s)?;
    let rngs: Arc<Vec<Mutex<StdRng>>> = Arc::new(
        (0..plan.readers)
            .map(|r| Mutex::new(StdRng::seed_from_u64(ctx.seed.wrapping_mul(31) + r as u64)))
            .collect(),
    );
    let crowd = ClosedLoop::new(plan.readers, Bound::Duration(plan.before + plan.after))
        .think(plan.think, ctx.seed)
        .label("prefix change: readers across the deploy")
        .with_timeline();
    let prefix = ctx.key("");
    let (pool, conn, v) = (ctx.pg.clone(), ctx.redis.clone(), version.clone());
    let read = move |c: labkit::measure::Call| {
        let id = rngs[c.worker].lock().expect("rng").sample(zipf) as i32;
        let key = format!("{prefix}v{}:account:{id}", v.load(Ordering::Relaxed));
        let (pool, mut conn) = (pool.clone(), conn.clone());
        async move {
            cache_aside::read(&mut conn, &key, Some(plan.ttl), || async move {
                load_account(&pool, id).await
            })
            .await
            .map(|r| r.served)
        }
    };
    let start = Instant::now();
    let deploy = async {
        tokio::time::sleep_until((start + plan.before).into()).await;
        version.store(2, Ordering::Relaxed);
    };
    let (load, ()) = tokio::join!(labkit::closed_loop(crowd, read), deploy);
    let samples = load.timeline;

    let second = Duration::from_secs(1);
    let bump = plan.before;
    let end = plan.before + plan.after;
    let hit_rate = |from: Duration, to: Duration| rate(&samples, from, to, |s| s == Served::Hit);
    let loads_per_s = |from: Duration, to: Duration| {
        let loads = samples
            .iter()
            .filter(|s| s.at >= from && s.at < to && s.out == Some(Served::Loaded))
            .count();
        loads as f64 / (to - from).as_secs_f64()
    };
    Ok(PrefixResult {
        hit_rate_before: hit_rate(Duration::ZERO, bump),
        hit_rate_first_second: hit_rate(bump, bump + second),
        hit_rate_last_second: hit_rate(end.saturating_sub(second), end),
        db_loads_per_s_before: loads_per_s(Duration::ZERO, bump),
        db_loads_per_s_first_second: loads_per_s(bump, bump + second),
        hit_rate_series: rate_over_time(&samples, Duration::from_millis(100), |s| {
            *s == Served::Hit
        }),
    })
}

fn rate(
    samples: &[Sample<Served>],
    from: Duration,
    to: Duration,
    hit: impl Fn(Served) -> bool,
) -> f64 {
    let window: Vec<_> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .filter_map(|s| s.out)
        .collect();
    window.iter().filter(|s| hit(**s)).count() as f64 / window.len().max(1) as f64
}

/// Share of reads per time bucket for which `hit` holds (x in seconds, y in %).
fn rate_over_time<O>(
    samples: &[Sample<O>],
    bucket: Duration,
    hit: impl Fn(&O) -> bool,
) -> Vec<(f64, f64)> {
    let mut counts: Vec<(u64, u64)> = Vec::new();
    for s in samples {
        let Some(o) = &s.out else { continue };
        let i = (s.at.as_secs_f64() / bucket.as_secs_f64()) as usize;
        if counts.len() <= i {
            counts.resize(i + 1, (0, 0));
        }
        counts[i].1 += 1;
        counts[i].0 += u64::from(hit(o));
    }
    let mid = |i: usize| (i as f64 + 0.5) * bucket.as_secs_f64();
    counts
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, (h, n))| (mid(i), 100.0 * *h as f64 / *n as f64))
        .collect()
}
