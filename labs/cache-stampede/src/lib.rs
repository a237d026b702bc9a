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
//! connections, nothing shared in memory), counts recomputes per expiry exactly, and then
//! answers the follow-up questions: how stale can a reader be (TTL vs delete-on-write),
//! what does each eviction policy do under memory pressure, why did the hit rate drop after
//! a deploy (the key prefix changed), and what happens when Redis is down (fail open).
//!
//! | module | what it holds |
//! |---|---|
//! | [`ledger`] | schema, seeding, the month-end report query (the loader) and its counters |
//! | [`entry`] | the cached envelope (value, delta, fresh-until), `GET`/`SET`, how a read was served |
//! | [`cache_aside`] | naive cache-aside; delete-on-write |
//! | [`single_flight`] | concurrent misses in one process share one load |
//! | [`redis_lock`] | `SET NX PX` lock, Lua compare-and-delete, waiters that back off and re-read |
//! | [`xfetch`] | probabilistic early expiration |
//! | [`swr`] | stale-while-revalidate with one background refresh per expiry |
//! | [`app`] | an app instance: picks a mechanism, fails open when Redis errors |
//! | [`readers`] | the crowd of readers with think time, and per-read samples |
//! | [`scenario`] | hot key, invalidation, eviction, prefix change, Redis down |

pub mod app;
pub mod cache_aside;
pub mod entry;
pub mod ledger;
pub mod readers;
pub mod redis_lock;
pub mod scenario;
pub mod single_flight;
pub mod swr;
pub mod xfetch;

use std::time::{Duration, Instant};

use labkit::backend::local::LocalBins;
use labkit::{Chart, LabCtx, Report, Scale, Table};

use crate::app::Strategy;
use crate::scenario::eviction::{self, EvictionPlan};
use crate::scenario::hot_key::{self, HotKeyPlan, HotKeyResult};
use crate::scenario::invalidation::{self, InvalidationPlan, WritePolicy};
use crate::scenario::prefix_change::{self, PrefixPlan};
use crate::scenario::redis_down::{self, RedisDownPlan};

/// The `cache-stampede` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStampede;

/// Every scenario's size, by scale.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub hot_key: HotKeyPlan,
    pub invalidation: InvalidationPlan,
    pub eviction: EvictionPlan,
    pub prefix: PrefixPlan,
    pub redis_down: RedisDownPlan,
}

impl Plan {
    pub fn for_scale(scale: Scale) -> Self {
        let ms = Duration::from_millis;
        let (_, accounts) = ledger::sizes(scale);
        // TTLs are seconds, not the story's minutes, so several expiries fit in a run. The
        // stampede does not care: what matters is how many readers arrive while one
        // recompute runs, and that is the same at 1.5 s and at 5 min.
        // Short enough that XFetch's early window (about delta × ln(reads per delta)) still
        // fits well inside the TTL when the report takes a few hundred ms under load.
        let ttl = scale.pick(ms(500), ms(2000), ms(3000));
        Self {
            hot_key: HotKeyPlan {
                readers: scale.pick(40, 200, 400),
                instances: scale.pick(4, 4, 8),
                pool_per_instance: scale.pick(4, 8, 8),
                ttl,
                duration: ttl * 5 / 2,
                no_cache_duration: scale.pick(ms(300), ms(1000), ms(2000)),
                think: scale.pick(ms(20), ms(50), ms(50)),
                window: scale.pick(ms(300), ms(1000), ms(1000)),
            },
            invalidation: InvalidationPlan {
                readers: scale.pick(8, 16, 32),
                instances: 2,
                ttl: scale.pick(ms(400), ms(1000), ms(2000)),
                writes: scale.pick(2, 3, 5),
                first_write: scale.pick(ms(100), ms(300), ms(300)),
                spacing: scale.pick(ms(500), ms(1200), ms(2300)),
                think: ms(20),
            },
            eviction: EvictionPlan {
                accounts,
                budget_bytes: scale.pick(512 << 10, 2 << 20, 16 << 20),
                warm_reads: scale.pick(1_000, 5_000, 50_000),
                measured_reads: scale.pick(2_000, 10_000, 100_000),
                workers: scale.pick(8, 16, 32),
                zipf_s: 1.0,
                ttl: Duration::from_secs(600),
            },
            prefix: PrefixPlan {
                accounts,
                readers: scale.pick(8, 32, 64),
                think: ms(5),
                before: scale.pick(ms(500), ms(1000), ms(3000)),
                after: scale.pick(ms(1000), ms(2500), ms(6000)),
                ttl: Duration::from_secs(300),
                zipf_s: 1.0,
            },
            redis_down: RedisDownPlan {
                readers: scale.pick(10, 50, 100),
                instances: 4,
                ttl,
                think: ms(50),
                up_for: scale.pick(ms(500), ms(1500), ms(3000)),
                down_for: scale.pick(ms(500), ms(1500), ms(3000)),
            },
        }
    }
}

#[labkit::async_trait]
impl labkit::Lab for CacheStampede {
    fn id(&self) -> &'static str {
        "cache-stampede"
    }

    fn title(&self) -> &'static str {
        "Cache stampede: cache-aside with TTL, stampede guards, invalidation and eviction"
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        let plan = Plan::for_scale(ctx.scale);
        let mut report = ctx.report(self.title());
        let mut phase = Instant::now();
        let mut done = |what: &str| {
            tracing::info!(ms = phase.elapsed().as_millis() as u64, "{what} done");
            phase = Instant::now();
        };
        ledger::seed(&ctx.pg, ctx.scale, ctx.seed).await?;
        done("seeding");
        let (ledger_rows, _) = ledger::sizes(ctx.scale);

        // The loader alone, one at a time: what one recompute costs an idle database.
        let loader = ledger::ReportLoader::new(ctx.pg.clone(), Default::default());
        loader.load().await?; // warm the buffer cache
        let alone = labkit::measure::sequential(5, |_| loader.load()).await;
        report
            .finding(
                "ledger_rows",
                "Ledger rows the report aggregates",
                ledger_rows as f64,
                "count",
            )
            .finding(
                "report_query_ms",
                "Month-end report, one run on an idle database (p50)",
                alone.p50_ms,
                "ms",
            )
            .finding(
                "readers",
                "Concurrent readers (hot key)",
                plan.hot_key.readers as f64,
                "count",
            )
            .finding(
                "app_instances",
                "App instances (separate pools and Redis connections)",
                plan.hot_key.instances as f64,
                "count",
            )
            .finding(
                "ttl_ms",
                "Report TTL in the lab (stands for the story's 5 minutes)",
                plan.hot_key.ttl.as_millis() as f64,
                "ms",
            );

        let mut hot = Vec::new();
        for strategy in Strategy::ALL {
            tracing::info!("hot key: {}", strategy.label());
            hot.push(hot_key::run(ctx, plan.hot_key, strategy).await?);
            done(strategy.key());
        }
        add_hot_key(&mut report, &plan.hot_key, &hot);

        // Both policies at once, on separate keys and readers: staleness is set by the TTL
        // and one DEL round trip, not by the few loads the other policy adds.
        let (ttl_only, on_write) = tokio::join!(
            invalidation::run(ctx, plan.invalidation, WritePolicy::TtlOnly),
            invalidation::run(ctx, plan.invalidation, WritePolicy::DeleteOnWrite),
        );
        let inval = [ttl_only?, on_write?];
        done("invalidation");
        report
            .finding(
                "ttl_only_staleness_ms",
                "Longest a reader saw the old report after a write, TTL only",
                inval[0].max_staleness().as_secs_f64() * 1e3,
                "ms",
            )
            .finding(
                "invalidate_on_write_staleness_ms",
                "Longest a reader saw the old report after a write, delete-on-write",
                inval[1].max_staleness().as_secs_f64() * 1e3,
                "ms",
            );
        let mut t = Table::new(
            format!(
                "Invalidation: a correcting entry is posted while {} readers watch (TTL {} ms)",
                plan.invalidation.readers,
                plan.invalidation.ttl.as_millis()
            ),
            &[
                "policy",
                "write",
                "committed at (s)",
                "stale reads after commit",
                "staleness (ms)",
            ],
        );
        for r in &inval {
            for (k, trial) in r.trials.iter().enumerate() {
                t.row([
                    r.policy.label().to_string(),
                    (k + 1).to_string(),
                    format!("{:.2}", trial.committed_at.as_secs_f64()),
                    trial.stale_reads.to_string(),
                    format!("{:.0}", trial.staleness.as_secs_f64() * 1e3),
                ]);
            }
        }
        report.table(t);

        match LocalBins::find() {
            Ok(bins) => {
                let mut t = Table::new(
                    format!(
                        "Eviction: {} accounts, Zipf s={} reads, maxmemory = empty server + {} KiB",
                        plan.eviction.accounts,
                        plan.eviction.zipf_s,
                        plan.eviction.budget_bytes >> 10
                    ),
                    &[
                        "policy",
                        "keys have TTL",
                        "hit rate",
                        "evicted_keys",
                        "OOM write errors",
                        "keys in Redis at end",
                    ],
                );
                // One Redis per policy, all at once: hit rates depend on the order of reads,
                // not on their speed.
                let runs = eviction::POLICIES.map(|(policy, with_ttl)| {
                    eviction::run(ctx, &bins, plan.eviction, policy, with_ttl)
                });
                for r in futures::future::join_all(runs).await {
                    let r = r?;
                    let (policy, with_ttl) = (r.policy, r.keys_have_ttl);
                    let hit = r.hit_rate * 100.0;
                    match (policy, with_ttl) {
                        ("allkeys-lru", _) => {
                            report.finding(
                                "hit_rate_allkeys_lru",
                                "Hit rate, allkeys-lru",
                                hit,
                                "%",
                            );
                        }
                        ("allkeys-lfu", _) => {
                            report.finding(
                                "hit_rate_allkeys_lfu",
                                "Hit rate, allkeys-lfu",
                                hit,
                                "%",
                            );
                        }
                        ("volatile-ttl", _) => {
                            report.finding(
                                "hit_rate_volatile_ttl",
                                "Hit rate, volatile-ttl",
                                hit,
                                "%",
                            );
                        }
                        ("noeviction", _) => {
                            report
                                .finding("hit_rate_noeviction", "Hit rate, noeviction", hit, "%")
                                .finding(
                                    "noeviction_write_errors",
                                    "Cache writes refused with OOM, noeviction",
                                    r.oom_write_errors as f64,
                                    "count",
                                );
                        }
                        _ => {
                            report
                                .finding(
                                    "volatile_lru_no_ttl_evicted_keys",
                                    "Keys evicted, volatile-lru with keys without TTL",
                                    r.evicted_keys as f64,
                                    "count",
                                )
                                .finding(
                                    "volatile_lru_no_ttl_write_errors",
                                    "Cache writes refused with OOM, volatile-lru, keys without TTL",
                                    r.oom_write_errors as f64,
                                    "count",
                                );
                        }
                    }
                    t.row([
                        policy.to_string(),
                        if r.keys_have_ttl { "yes" } else { "no" }.to_string(),
                        format!("{hit:.1} %"),
                        r.evicted_keys.to_string(),
                        r.oom_write_errors.to_string(),
                        r.keys_at_end.to_string(),
                    ]);
                }
                report.table(t);
                done("eviction");
            }
            Err(e) => {
                report.note(format!("Eviction and Redis-down scenarios skipped: they start their own redis-server, and none was found ({e})."));
            }
        }

        let p = prefix_change::run(ctx, plan.prefix).await?;
        done("prefix change");
        report
            .finding(
                "hit_rate_before_prefix_change",
                "Hit rate before the deploy (v1 keys, warm)",
                p.hit_rate_before * 100.0,
                "%",
            )
            .finding(
                "hit_rate_after_prefix_change",
                "Hit rate in the first second after the prefix change",
                p.hit_rate_first_second * 100.0,
                "%",
            )
            .finding(
                "hit_rate_recovering_prefix_change",
                "Hit rate in the last second of the run (recovering)",
                p.hit_rate_last_second * 100.0,
                "%",
            )
            .finding(
                "db_loads_per_s_before_prefix_change",
                "Postgres loads per second before the deploy",
                p.db_loads_per_s_before,
                "/s",
            )
            .finding(
                "db_loads_per_s_after_prefix_change",
                "Postgres loads per second, first second after",
                p.db_loads_per_s_first_second,
                "/s",
            );
        report.chart(
            Chart::new(
                "prefix-change-hit-rate",
                "Hit rate around the deploy that bumped the key prefix v1 → v2",
                "seconds",
                "hit rate (%) per 100 ms",
            )
            .series("hit rate", p.hit_rate_series),
        );

        if let Ok(bins) = LocalBins::find() {
            let d = redis_down::run(ctx, &bins, plan.redis_down).await?;
            done("redis down");
            report
                .finding(
                    "redis_down_fallback_reads",
                    "Reads served from Postgres after Redis died (fail open)",
                    d.fallback_reads as f64,
                    "count",
                )
                .finding(
                    "redis_down_redis_errors",
                    "Redis errors absorbed by failing open",
                    d.redis_errors as f64,
                    "count",
                )
                .finding(
                    "redis_down_failed_reads",
                    "Reads that returned an error to the reader",
                    d.failed_reads as f64,
                    "count",
                )
                .finding(
                    "redis_down_db_loads_per_s_before",
                    "Report queries per second, Redis up",
                    d.db_loads_per_s_before,
                    "/s",
                )
                .finding(
                    "redis_down_db_loads_per_s_after",
                    "Report queries per second, Redis down",
                    d.db_loads_per_s_after,
                    "/s",
                )
                .finding(
                    "redis_down_p99_ms_before",
                    "Read p99, Redis up",
                    d.p99_ms_before,
                    "ms",
                )
                .finding(
                    "redis_down_p99_ms_after",
                    "Read p99, Redis down",
                    d.p99_ms_after,
                    "ms",
                );
        }

        let get = |k: &str| report.get(k).unwrap_or(f64::NAN);
        let sentence = format!(
            "When the month-end report expired under {} readers on {} app instances, naive cache-aside ran the {:.0} ms query {:.0} times per expiry (read p99 {:.0} ms); a Redis lock cut that to {:.1} (p99 {:.0} ms), and stale-while-revalidate to {:.1} with no reader waiting (p99 {:.1} ms, at most {:.0} ms stale).",
            plan.hot_key.readers,
            plan.hot_key.instances,
            get("report_query_ms"),
            get("naive_recomputes_per_expiry"),
            get("naive_p99_ms"),
            get("redis_lock_recomputes_per_expiry"),
            get("redis_lock_p99_ms"),
            get("swr_recomputes_per_expiry"),
            get("swr_p99_ms"),
            get("swr_max_staleness_ms"),
        );
        report.sentence(sentence);
        report.note("Recomputes per expiry = report queries ÷ bursts of queries separated by more than TTL/2 (one burst per expiry, or per early refresh for XFetch). Counted exactly in the loader.");
        report.note("Single-flight is per instance by design: with N instances, up to N loads per expiry get through. The Redis lock and the stale-while-revalidate refresh claim are fleet-wide.");
        report.note("XFetch needs TTL much longer than delta × ln(reads per delta): the first early recompute comes about that long before expiry. The lab's TTL is seconds, so when the report slows down under load (mean query ms), the early window can cover the whole TTL and readers keep firing recomputes, which slow the report further. With the story's 5-minute TTL the same delta leaves a wide margin.");
        report.note("Expiry windows: reads that started within the window after a cached value's TTL ran out (or would have, for XFetch). Postgres busy time sums the report query's execution on its connections, not the wait for a connection.");
        Ok(report)
    }
}

fn add_hot_key(report: &mut Report, plan: &HotKeyPlan, results: &[HotKeyResult]) {
    let mut t = Table::new(
        format!(
            "Hot key: {} readers on {} instances, TTL {} ms, {} s per mechanism",
            plan.readers,
            plan.instances,
            plan.ttl.as_millis(),
            plan.duration.as_secs_f64()
        ),
        &[
            "mechanism",
            "reads",
            "recomputes",
            "expiries",
            "recomputes / expiry",
            "mean query ms",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "p99 in expiry windows ms",
            "Postgres busy ms",
            "waited for another's load",
            "stale reads",
            "max staleness ms",
            "errors",
        ],
    );
    let mut chart = Chart::new(
        "hot-key-latency",
        "Read latency over time around expiries (p99 per 100 ms)",
        "seconds",
        "p99 latency (ms)",
    )
    .log_y();
    for r in results {
        let k = r.strategy.key();
        if r.strategy == Strategy::NoCache {
            report
                .finding(
                    "no_cache_p99_ms",
                    "Read p99, no cache (every read queries Postgres)",
                    r.overall.p99_ms,
                    "ms",
                )
                .finding(
                    "no_cache_reads_per_s",
                    "Reads per second, no cache",
                    r.overall.throughput_per_s,
                    "/s",
                );
        } else {
            report
                .finding(
                    &format!("{k}_recomputes_per_expiry"),
                    &format!("Recomputes per expiry, {}", r.strategy.label()),
                    r.recomputes_per_expiry(),
                    "count",
                )
                .finding(
                    &format!("{k}_p99_ms"),
                    &format!("Read p99, {}", r.strategy.label()),
                    r.overall.p99_ms,
                    "ms",
                )
                .finding(
                    &format!("{k}_expiry_window_p99_ms"),
                    &format!("Read p99 in expiry windows, {}", r.strategy.label()),
                    r.in_windows.p99_ms,
                    "ms",
                );
            chart = chart.series(r.strategy.label(), r.p99_series.clone());
        }
        if r.strategy == Strategy::StaleWhileRevalidate {
            report
                .finding(
                    "swr_max_staleness_ms",
                    "Longest past freshness a stale-while-revalidate read was",
                    r.max_stale_ms as f64,
                    "ms",
                )
                .finding(
                    "swr_stale_reads",
                    "Stale reads served, stale-while-revalidate",
                    r.stale_reads as f64,
                    "count",
                );
        }
        let na = r.strategy == Strategy::NoCache;
        t.row([
            r.strategy.label().to_string(),
            r.reads.to_string(),
            r.recomputes.to_string(),
            if na {
                "—".into()
            } else {
                r.episodes.to_string()
            },
            if na {
                "—".into()
            } else {
                format!("{:.1}", r.recomputes_per_expiry())
            },
            format!("{:.0}", r.mean_query_ms()),
            format!("{:.1}", r.overall.p50_ms),
            format!("{:.1}", r.overall.p95_ms),
            format!("{:.1}", r.overall.p99_ms),
            format!("{:.0}", r.overall.max_ms),
            if na {
                "—".into()
            } else {
                format!("{:.1}", r.in_windows.p99_ms)
            },
            format!("{:.0}", r.db_busy.as_secs_f64() * 1e3),
            r.shared_reads.to_string(),
            r.stale_reads.to_string(),
            r.max_stale_ms.to_string(),
            r.errors.to_string(),
        ]);
    }
    report.table(t);
    report.chart(chart);
}
