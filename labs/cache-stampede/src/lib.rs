//! Cache stampede: cache-aside with TTL, stampede guards, invalidation and eviction.
//!
//! **The war story.** At month-end finance refreshes the same heavy report every thirty
//! seconds, from dozens of dashboards. It is cached in Redis with a 5-minute TTL. The key
//! expires while hundreds of requests are reading it; every one of them misses in the same
//! instant, every one runs the aggregate, and Postgres melts — C readers turn one expiry
//! into C copies of the most expensive query in the building.
//!
//! **The mechanisms.** Naive cache-aside (`GET`, on a miss query and `SET PX`) is the
//! incident. Single-flight lets one load per *instance* through; a Redis lock (`SET NX PX`,
//! compare-and-delete release) lets one load per *fleet* through and makes the rest wait;
//! XFetch recomputes early, at random, before the key expires; stale-while-revalidate
//! serves the old value at once and refreshes it in the background. The lab runs each on
//! real Postgres and Redis with 200 readers over 4 app instances (separate pools and Redis
//! connections, nothing shared in memory), counts recomputes per expiry exactly, shows the
//! naive stall through an open loop beside the closed one (coordinated omission), runs
//! XFetch where its early window is a small share of the TTL (and once where it is not),
//! and then answers the follow-up questions: how stale can a reader be (TTL vs
//! delete-on-write), what does each eviction policy do under memory pressure, why did the
//! hit rate drop after a deploy (the key prefix changed), and what happens when Redis is
//! down (fail open).
//!
//! | module | what it holds |
//! |---|---|
//! | [`ledger`] | schema, seeding, the month-end report query (the loader) and its counters |
//! | [`entry`] | the cached envelope (value, delta, fresh-until), `GET`/`SET`, how a read was served |
//! | [`cache_aside`] | naive cache-aside; delete-on-write |
//! | [`single_flight`] | concurrent misses in one process share one load |
//! | [`redis_lock`] | `SET NX PX` lock, Lua compare-and-delete, waiters that back off and re-read |
//! | [`xfetch`] | probabilistic early expiration; its early window and expected recomputes |
//! | [`swr`] | stale-while-revalidate with one background refresh per expiry |
//! | [`app`] | an app instance: picks a mechanism, fails open when Redis errors |
//! | [`scenario`] | hot key, invalidation, eviction, prefix change, Redis down (labkit's drivers) |
//! | [`plan`] | every scenario's shape, by scale and load knobs |
//! | [`run`] | the run, step by step |
//! | [`report`] | findings, tables, notes, charts and the sentence |

pub mod app;
pub mod cache_aside;
pub mod entry;
pub mod ledger;
pub mod plan;
pub mod redis_lock;
pub mod report;
pub mod run;
pub mod scenario;
pub mod single_flight;
pub mod swr;
pub mod xfetch;

use labkit::{LabCtx, Report};

pub use report::FINDING_KEYS;

/// The `cache-stampede` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStampede;

#[labkit::async_trait]
impl labkit::Lab for CacheStampede {
    fn id(&self) -> &'static str {
        "cache-stampede"
    }

    fn title(&self) -> &'static str {
        "Cache stampede: cache-aside with TTL, stampede guards, invalidation and eviction"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        run::run(ctx, self.title()).await
    }
}
