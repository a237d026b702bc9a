//! The run's numbers as findings, tables, notes, charts and the sentence.

use std::time::Duration;

use labkit::report::Finding;
use labkit::{Better, Chart, LabCtx, Report, Table};

use crate::app::Strategy;
use crate::plan::XFETCH_MAX_WINDOW_SHARE;
use crate::run::Outcome;
use crate::scenario::hot_key::{Driver, HotKeyResult};
use crate::xfetch;

/// Every key the report carries (on a backend that can give the lab Redis servers of its
/// own; elsewhere the eviction and Redis-down keys are skipped with a note).
pub const FINDING_KEYS: &[&str] = &[
    "ledger_rows",
    "report_query_ms",
    "readers",
    "app_instances",
    "ttl_ms",
    "no_cache_p99_ms",
    "no_cache_reads_per_s",
    "naive_recomputes_per_expiry",
    "naive_p99_ms",
    "naive_expiry_window_p99_ms",
    "naive_open_loop_p99_ms",
    "naive_slow_read_share",
    "naive_open_loop_slow_read_share",
    "single_flight_recomputes_per_expiry",
    "single_flight_p99_ms",
    "single_flight_expiry_window_p99_ms",
    "redis_lock_recomputes_per_expiry",
    "redis_lock_p99_ms",
    "redis_lock_expiry_window_p99_ms",
    "redis_lock_open_loop_p99_ms",
    "redis_lock_slow_read_share",
    "redis_lock_open_loop_slow_read_share",
    "xfetch_recomputes_per_expiry",
    "xfetch_p99_ms",
    "xfetch_expiry_window_p99_ms",
    "xfetch_ttl_ms",
    "xfetch_delta_ms",
    "xfetch_reads_per_delta",
    "xfetch_early_window_ms",
    "xfetch_early_window_share_of_ttl",
    "xfetch_refresh_lead_ms",
    "xfetch_expected_recomputes_per_expiry",
    "xfetch_misses",
    "xfetch_short_ttl_ms",
    "xfetch_short_ttl_recomputes_per_expiry",
    "xfetch_short_ttl_p99_ms",
    "swr_recomputes_per_expiry",
    "swr_p99_ms",
    "swr_expiry_window_p99_ms",
    "swr_max_staleness_ms",
    "swr_stale_reads",
    "ttl_only_staleness_ms",
    "invalidate_on_write_staleness_ms",
    "hit_rate_allkeys_lru",
    "hit_rate_allkeys_lfu",
    "hit_rate_volatile_ttl",
    "hit_rate_noeviction",
    "noeviction_write_errors",
    "volatile_lru_no_ttl_evicted_keys",
    "volatile_lru_no_ttl_write_errors",
    "hit_rate_before_prefix_change",
    "hit_rate_after_prefix_change",
    "hit_rate_recovering_prefix_change",
    "db_loads_per_s_before_prefix_change",
    "db_loads_per_s_after_prefix_change",
    "redis_down_fallback_reads",
    "redis_down_redis_errors",
    "redis_down_failed_reads",
    "redis_down_db_loads_per_s_before",
    "redis_down_db_loads_per_s_after",
    "redis_down_p99_ms_before",
    "redis_down_p99_ms_after",
];

pub fn build(ctx: &LabCtx, title: &str, out: &Outcome) -> Report {
    let mut r = ctx.report(title);
    basics(&mut r, out);
    hot_key(&mut r, out);
    closed_vs_open(&mut r, out);
    xfetch_regimes(&mut r, out);
    invalidation(&mut r, out);
    eviction(&mut r, out);
    prefix(&mut r, out);
    redis_down(&mut r, out);
    sentence(&mut r, out);
    notes(&mut r, out);
    r
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A TTL the run chose (no direction to improve in), resting on `samples` measurements: one
/// for the lab's fixed TTL, the recomputes whose mean time set an XFetch TTL.
fn setting(r: &mut Report, key: &str, label: &str, ttl: Duration, samples: u64) {
    r.push(Finding {
        key: key.into(),
        label: label.into(),
        value: ms(ttl),
        unit: "ms".into(),
        samples: Some(samples.max(1)),
        better: None,
    });
}

fn basics(r: &mut Report, out: &Outcome) {
    let p = &out.plan;
    r.finding(
        "ledger_rows",
        "Ledger rows the report aggregates",
        p.ledger_rows as f64,
        "count",
    )
    .p50(
        "report_query_ms",
        "Month-end report, one run on an idle database (p50)",
        &out.report_alone,
    )
    .finding(
        "readers",
        "Concurrent readers (hot key)",
        p.hot_key.readers as f64,
        "count",
    )
    .finding(
        "app_instances",
        "App instances (separate pools and Redis connections)",
        p.hot_key.instances as f64,
        "count",
    );
    setting(
        r,
        "ttl_ms",
        "Report TTL in the lab (stands for the story's 5 minutes)",
        p.ttl,
        1,
    );
}

fn hot_key(r: &mut Report, out: &Outcome) {
    let p = &out.plan;
    for h in &out.hot {
        let (k, label) = (h.phase.strategy.key(), h.phase.strategy.label());
        match (h.phase.slug, h.phase.driver) {
            ("no-cache", _) => {
                r.p99(
                    "no_cache_p99_ms",
                    "Read p99, no cache (every read queries Postgres)",
                    &h.overall,
                )
                .finding(
                    "no_cache_reads_per_s",
                    "Reads per second, no cache",
                    h.reads_per_s(),
                    "/s",
                );
            }
            ("xfetch-short-ttl", _) => {
                let from = out.hot("xfetch").map_or(0, |x| x.recomputes);
                setting(
                    r,
                    "xfetch_short_ttl_ms",
                    "XFetch TTL cut to its own early window (the pitfall)",
                    h.phase.settings.ttl,
                    from,
                );
                r.finding(
                    "xfetch_short_ttl_recomputes_per_expiry",
                    "Recomputes per expiry, XFetch when TTL is close to delta·ln(rate·delta)",
                    h.recomputes_per_expiry(),
                    "count",
                )
                .better("xfetch_short_ttl_recomputes_per_expiry", Better::Lower)
                .p99(
                    "xfetch_short_ttl_p99_ms",
                    "Read p99, XFetch when TTL is close to delta·ln(rate·delta)",
                    &h.overall,
                );
            }
            (_, Driver::Open { .. }) => {
                r.p99(
                    &format!("{k}_open_loop_p99_ms"),
                    &format!("Read p99, {label}, open loop"),
                    &h.overall,
                );
            }
            (_, Driver::Closed) => {
                let key = format!("{k}_recomputes_per_expiry");
                r.finding(
                    &key,
                    &format!("Recomputes per expiry, {label}"),
                    h.recomputes_per_expiry(),
                    "count",
                )
                .better(&key, Better::Lower)
                .p99(
                    &format!("{k}_p99_ms"),
                    &format!("Read p99, {label}"),
                    &h.overall,
                )
                .p99(
                    &format!("{k}_expiry_window_p99_ms"),
                    &format!("Read p99 in expiry windows, {label}"),
                    &h.in_windows,
                );
            }
        }
        // Coordinated omission in one number: how many reads felt the stall, by loop.
        if matches!(
            h.phase.slug,
            "naive" | "naive-open" | "redis-lock" | "redis-lock-open"
        ) {
            let (key, how) = match h.phase.driver {
                Driver::Closed => (format!("{k}_slow_read_share"), "closed loop"),
                Driver::Open { .. } => (format!("{k}_open_loop_slow_read_share"), "open loop"),
            };
            r.finding(
                &key,
                &format!("Reads slower than 100 ms, {label}, {how}"),
                h.slow_share * 100.0,
                "%",
            )
            .better(&key, Better::Lower);
        }
        if h.phase.strategy == Strategy::StaleWhileRevalidate {
            r.measured(
                "swr_max_staleness_ms",
                "Longest past freshness a stale-while-revalidate read was",
                h.max_stale_ms as f64,
                "ms",
                h.reads,
            )
            .finding(
                "swr_stale_reads",
                "Stale reads served, stale-while-revalidate",
                h.stale_reads as f64,
                "count",
            );
        }
    }

    let mut t = Table::new(
        format!(
            "Hot key: {} readers on {} instances, TTL {} ms (XFetch: its own), {:.1} s per phase",
            p.hot_key.readers,
            p.hot_key.instances,
            p.ttl.as_millis(),
            p.duration.as_secs_f64()
        ),
        &[
            "mechanism",
            "loop",
            "TTL ms",
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
    for h in &out.hot {
        let cached = h.phase.strategy != Strategy::NoCache;
        let dash = |s: String| if cached { s } else { "—".into() };
        let o = &h.overall;
        t.row([
            h.phase.strategy.label().to_string(),
            match h.phase.driver {
                Driver::Closed => "closed".into(),
                Driver::Open { rate_per_s } => format!("open {rate_per_s:.0}/s"),
            },
            h.phase.settings.ttl.as_millis().to_string(),
            h.reads.to_string(),
            h.recomputes.to_string(),
            dash(h.episodes.to_string()),
            dash(format!("{:.1}", h.recomputes_per_expiry())),
            format!("{:.0}", h.mean_query_ms()),
            format!("{:.1}", o.p50_ms),
            format!("{:.1}", o.p95_ms),
            format!("{:.1}", o.p99_ms),
            format!("{:.0}", o.max_ms),
            dash(format!("{:.1}", h.in_windows.p99_ms)),
            format!("{:.0}", ms(h.db_busy)),
            h.shared_reads.to_string(),
            h.stale_reads.to_string(),
            h.max_stale_ms.to_string(),
            h.errors.to_string(),
        ]);
        if cached {
            chart = chart.series(&h.phase.name, h.p99_series.clone());
        }
    }
    r.table(t).chart(chart);
}

fn closed_vs_open(r: &mut Report, out: &Outcome) {
    let mut t = Table::new(
        "Coordinated omission: the same expiries, closed loop vs open loop",
        &[
            "mechanism",
            "loop",
            "reads",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "reads slower than 100 ms",
            "sent late p99 ms",
        ],
    );
    for (closed, open) in [("naive", "naive-open"), ("redis-lock", "redis-lock-open")] {
        let (Some(c), Some(o)) = (out.hot(closed), out.hot(open)) else {
            continue;
        };
        for h in [c, o] {
            let s = &h.overall;
            t.row([
                h.phase.strategy.label().to_string(),
                match h.phase.driver {
                    Driver::Closed => format!("closed, {} readers", h.phase.readers),
                    Driver::Open { rate_per_s } => format!("open, {rate_per_s:.0}/s"),
                },
                h.reads.to_string(),
                format!("{:.1}", s.p50_ms),
                format!("{:.1}", s.p95_ms),
                format!("{:.1}", s.p99_ms),
                format!("{:.0}", s.max_ms),
                format!("{:.1} %", h.slow_share * 100.0),
                h.schedule
                    .map_or("—".into(), |s| format!("{:.2}", s.send_late_p99_ms)),
            ]);
        }
        let phase = format!("hot key: {}", o.phase.name);
        if let Some(w) = o.schedule.and_then(|s| s.warning(&phase)) {
            r.note(w);
        }
    }
    r.table(t);
}

/// delta, reads per delta, expected early window and its share of the TTL, for one phase.
struct Regime {
    delta: Duration,
    reads_per_delta: f64,
    window: Duration,
    share: f64,
}

/// The story's TTL, against which the same window is measured in the table and notes.
const STORY_TTL: Duration = Duration::from_secs(300);

impl Regime {
    fn share_of(&self, ttl: Duration) -> f64 {
        self.window.as_secs_f64() / ttl.as_secs_f64()
    }
}

/// "1, 2, 1": recomputes in each refresh, in order.
fn refreshes(h: &HotKeyResult) -> String {
    let v: Vec<String> = h.per_refresh.iter().map(u64::to_string).collect();
    v.join(", ")
}

fn regime(h: &HotKeyResult) -> Regime {
    let delta = Duration::from_secs_f64(h.mean_query_ms() / 1e3);
    let window = xfetch::expected_early_window(delta, h.phase.settings.beta, h.reads_per_s());
    Regime {
        delta,
        reads_per_delta: h.reads_per_s() * delta.as_secs_f64(),
        window,
        share: window.as_secs_f64() / h.phase.settings.ttl.as_secs_f64(),
    }
}

fn xfetch_regimes(r: &mut Report, out: &Outcome) {
    if let Some(x) = out.hot("xfetch") {
        let g = regime(x);
        let n = x.recomputes;
        let from = out.hot("redis-lock").map_or(0, |l| l.recomputes);
        setting(
            r,
            "xfetch_ttl_ms",
            "XFetch TTL: about ten times its expected early window (the faithful regime)",
            x.phase.settings.ttl,
            from,
        );
        r.measured(
            "xfetch_delta_ms",
            "XFetch delta: mean report time under the crowd",
            ms(g.delta),
            "ms",
            n,
        )
        .finding(
            "xfetch_reads_per_delta",
            "Reads of the key per delta",
            g.reads_per_delta,
            "count",
        )
        .measured(
            "xfetch_early_window_ms",
            "Expected early window, delta·beta·ln(beta·reads per delta)",
            ms(g.window),
            "ms",
            n,
        )
        .finding(
            "xfetch_early_window_share_of_ttl",
            "Expected early window as a share of XFetch's TTL",
            g.share * 100.0,
            "%",
        )
        .measured(
            "xfetch_refresh_lead_ms",
            "How long before expiry XFetch's first recompute started (mean per refresh)",
            x.mean_lead_ms(),
            "ms",
            x.leads.len() as u64,
        )
        .finding(
            "xfetch_expected_recomputes_per_expiry",
            "Expected recomputes per refresh, e^(1/beta)",
            xfetch::expected_recomputes(x.phase.settings.beta),
            "count",
        )
        .finding(
            "xfetch_misses",
            "Reads that found the key expired, XFetch",
            x.misses as f64,
            "count",
        )
        .better("xfetch_misses", Better::Lower);
    }
    let mut t = Table::new(
        "XFetch: is the regime faithful? (the story: 5 min TTL, ~20 ms report, window ≈ 0.03 % of the TTL)",
        &[
            "phase",
            "beta",
            "TTL ms",
            "delta ms",
            "reads/s",
            "reads per delta",
            "expected window ms",
            "window / TTL",
            "first recompute before expiry ms",
            "recomputes per refresh",
            "recomputes / expiry",
            "expected e^(1/beta)",
            "misses",
            "p99 ms",
            "window / 5 min",
        ],
    );
    for h in ["xfetch", "xfetch-short-ttl"]
        .iter()
        .filter_map(|s| out.hot(s))
    {
        let g = regime(h);
        let beta = h.phase.settings.beta;
        t.row([
            h.phase.name.clone(),
            format!("{beta}"),
            h.phase.settings.ttl.as_millis().to_string(),
            format!("{:.1}", ms(g.delta)),
            format!("{:.0}", h.reads_per_s()),
            format!("{:.0}", g.reads_per_delta),
            format!("{:.0}", ms(g.window)),
            format!("{:.0} %", g.share * 100.0),
            if h.leads.is_empty() {
                "—".into()
            } else {
                format!("{:.0}", h.mean_lead_ms())
            },
            refreshes(h),
            format!("{:.1}", h.recomputes_per_expiry()),
            format!("{:.2}", xfetch::expected_recomputes(beta)),
            h.misses.to_string(),
            format!("{:.1}", h.overall.p99_ms),
            format!("{:.2} %", g.share_of(STORY_TTL) * 100.0),
        ]);
    }
    r.table(t);
}

fn invalidation(r: &mut Report, out: &Outcome) {
    let [ttl_only, on_write] = &out.invalidation;
    r.measured(
        "ttl_only_staleness_ms",
        "Longest a reader saw the old report after a write, TTL only",
        ms(ttl_only.max_staleness()),
        "ms",
        ttl_only.reads_after_commit,
    )
    .measured(
        "invalidate_on_write_staleness_ms",
        "Longest a reader saw the old report after a write, delete-on-write",
        ms(on_write.max_staleness()),
        "ms",
        on_write.reads_after_commit,
    );
    let p = &out.plan.invalidation;
    let mut t = Table::new(
        format!(
            "Invalidation: a correcting entry is posted while {} readers watch (TTL {} ms)",
            p.readers,
            p.ttl.as_millis()
        ),
        &[
            "policy",
            "write",
            "committed at (s)",
            "stale reads after commit",
            "staleness (ms)",
        ],
    );
    for res in &out.invalidation {
        for (k, trial) in res.trials.iter().enumerate() {
            t.row([
                res.policy.label().to_string(),
                (k + 1).to_string(),
                format!("{:.2}", trial.committed_at.as_secs_f64()),
                trial.stale_reads.to_string(),
                format!("{:.0}", ms(trial.staleness)),
            ]);
        }
    }
    r.table(t);
}

fn eviction(r: &mut Report, out: &Outcome) {
    let runs = match &out.eviction {
        Ok(runs) => runs,
        Err(why) => {
            r.skipped("eviction (a small-maxmemory Redis per policy)", why.clone());
            return;
        }
    };
    let p = &out.plan.eviction;
    let mut t = Table::new(
        format!(
            "Eviction: {} accounts, Zipf s={} reads, maxmemory = empty server + {} KiB",
            p.accounts,
            p.zipf_s,
            p.budget_bytes >> 10
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
    for e in runs {
        let hit = e.hit_rate * 100.0;
        let hit_key = format!("hit_rate_{}", e.policy.replace('-', "_"));
        match (e.policy, e.keys_have_ttl) {
            ("volatile-lru", false) => {
                r.finding(
                    "volatile_lru_no_ttl_evicted_keys",
                    "Keys evicted, volatile-lru with keys without TTL",
                    e.evicted_keys as f64,
                    "count",
                )
                .finding(
                    "volatile_lru_no_ttl_write_errors",
                    "Cache writes refused with OOM, volatile-lru, keys without TTL",
                    e.oom_write_errors as f64,
                    "count",
                )
                .better("volatile_lru_no_ttl_write_errors", Better::Lower);
            }
            (policy, _) => {
                r.finding(&hit_key, &format!("Hit rate, {policy}"), hit, "%")
                    .better(&hit_key, Better::Higher);
            }
        }
        if e.policy == "noeviction" {
            r.finding(
                "noeviction_write_errors",
                "Cache writes refused with OOM, noeviction",
                e.oom_write_errors as f64,
                "count",
            )
            .better("noeviction_write_errors", Better::Lower);
        }
        t.row([
            e.policy.to_string(),
            if e.keys_have_ttl { "yes" } else { "no" }.to_string(),
            format!("{hit:.1} %"),
            e.evicted_keys.to_string(),
            e.oom_write_errors.to_string(),
            e.keys_at_end.to_string(),
        ]);
    }
    r.table(t);
}

fn prefix(r: &mut Report, out: &Outcome) {
    let p = &out.prefix;
    r.finding(
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
    )
    // What a cache is for: fewer loads reaching Postgres.
    .better("db_loads_per_s_before_prefix_change", Better::Lower)
    .better("db_loads_per_s_after_prefix_change", Better::Lower)
    .chart(
        Chart::new(
            "prefix-change-hit-rate",
            "Hit rate around the deploy that bumped the key prefix v1 → v2",
            "seconds",
            "hit rate (%) per 100 ms",
        )
        .series("hit rate", p.hit_rate_series.clone()),
    );
}

fn redis_down(r: &mut Report, out: &Outcome) {
    let d = match &out.redis_down {
        Ok(d) => d,
        Err(why) => {
            r.skipped("Redis down (a Redis the lab may stop)", why.clone());
            return;
        }
    };
    r.finding(
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
    .better("redis_down_failed_reads", Better::Lower)
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
    .better("redis_down_db_loads_per_s_before", Better::Lower)
    .better("redis_down_db_loads_per_s_after", Better::Lower)
    .p99("redis_down_p99_ms_before", "Read p99, Redis up", &d.before)
    .p99("redis_down_p99_ms_after", "Read p99, Redis down", &d.after);
}

fn sentence(r: &mut Report, out: &Outcome) {
    let get = |k: &str| r.get(k).unwrap_or(f64::NAN);
    let s = format!(
        "When the month-end report expired under {} readers on {} app instances, naive cache-aside ran the {:.0} ms query {:.0} times per expiry (read p99 {:.0} ms closed-loop, {:.0} ms open-loop); a Redis lock cut that to {:.1} (p99 {:.0} ms), XFetch to {:.1} recomputes {:.0} ms ahead of expiry (TTL {:.0} ms, {:.0}× its early window), and stale-while-revalidate to {:.1} with no reader waiting (p99 {:.1} ms, at most {:.0} ms stale).",
        out.plan.hot_key.readers,
        out.plan.hot_key.instances,
        get("report_query_ms"),
        get("naive_recomputes_per_expiry"),
        get("naive_p99_ms"),
        get("naive_open_loop_p99_ms"),
        get("redis_lock_recomputes_per_expiry"),
        get("redis_lock_p99_ms"),
        get("xfetch_recomputes_per_expiry"),
        get("xfetch_refresh_lead_ms"),
        get("xfetch_ttl_ms"),
        100.0 / get("xfetch_early_window_share_of_ttl"),
        get("swr_recomputes_per_expiry"),
        get("swr_p99_ms"),
        get("swr_max_staleness_ms"),
    );
    r.sentence(s);
}

fn notes(r: &mut Report, out: &Outcome) {
    r.note("Recomputes per expiry = report queries ÷ bursts of queries separated by more than TTL/2 (one burst per expiry, or per early refresh for XFetch). Counted exactly in the loader.");
    r.note("Single-flight is per instance by design: with N instances, up to N loads per expiry get through. The Redis lock and the stale-while-revalidate refresh claim are fleet-wide.");
    r.note(format!(
        "Open loop vs closed loop: the closed loop's readers wait for their read before asking again, so while an expiry stalls them they stop asking, and the stall is charged once per reader (coordinated omission). The open loop keeps reads due at {:.0}/s (at most {} in flight) and charges each from when it was due, as users arriving at a real service would be.",
        out.plan.open_rate_per_s, out.plan.hot_key.readers
    ));
    if let Some(x) = out.hot("xfetch") {
        let g = regime(x);
        let beta = x.phase.settings.beta;
        let mut n = format!(
            "XFetch runs with a TTL of its own ({} ms, not the lab's {} ms) and beta {beta}: its first early recompute comes about delta·beta·ln(beta·reads per delta) before expiry — here delta {:.1} ms, {:.0} reads per delta: {:.0} ms under this crowd — and XFetch is only XFetch while that is a small share of the TTL ({:.1} % here; the phase's TTL is set from the delta and read rate of the Redis-lock phase to about {:.0}× the window; {:.2} % of the story's 5 minutes). The gate depends only on the time left before expiry, delta and the read rate, not on the TTL, so once the window is a small share the refresh runs as it would at 5 minutes. Check it in the table: the first recompute of each refresh started {:.0} ms before expiry on average (the expected window, plus about 0.58·beta·delta as the first firing is itself random), {} reads found the key expired, and the refreshes held {} recomputes each. Expected per refresh: e^(1/beta) = {:.2} — the first reader plus those who also draw \"recompute\" during its delta (beta 1, the paper's default, expects e ≈ {:.2}); a recompute that runs k times slower than the delta it was judged by draws e^(k/beta), and on a database shared with the crowd the extra recomputes are what slows it.",
            x.phase.settings.ttl.as_millis(),
            out.plan.ttl.as_millis(),
            ms(g.delta),
            g.reads_per_delta,
            ms(g.window),
            g.share * 100.0,
            1.0 / XFETCH_MAX_WINDOW_SHARE,
            g.share_of(STORY_TTL) * 100.0,
            x.mean_lead_ms(),
            x.misses,
            refreshes(x),
            xfetch::expected_recomputes(beta),
            xfetch::expected_recomputes(1.0),
        );
        if g.share > 3.0 * XFETCH_MAX_WINDOW_SHARE || x.misses > 0 {
            n.push_str(" On this machine the report ran slowly enough that the window is not a small share even of the longest TTL the lab allows: these XFetch numbers are not the algorithm's.");
        }
        r.note(n);
    }
    if let Some(s) = out.hot("xfetch-short-ttl") {
        r.note(format!(
            "XFetch when TTL is close to delta·ln(rate·delta): with the TTL cut to its own early window ({} ms), a value is already due when it is stored, readers keep drawing \"recompute\", the recomputes slow the report, which widens the window further: {:.0} recomputes per expiry, read p99 {:.0} ms. A compressed clock does this to XFetch; a 5-minute TTL does not.",
            s.phase.settings.ttl.as_millis(),
            s.recomputes_per_expiry(),
            s.overall.p99_ms,
        ));
    }
    r.note("Expiry windows: reads that started within the window after a cached value's TTL ran out (or would have, for XFetch). Postgres busy time sums the report query's execution on its connections, not the wait for a connection.");
    for h in &out.hot {
        if let Some(e) = &h.first_error {
            r.note(format!(
                "hot key: {}: {} reads failed; the first: {e}",
                h.phase.name, h.errors
            ));
        }
    }
}
