//! Rate limiter: token bucket, sliding window and GCRA on shared Redis, with honest 429s.
//!
//! "How would you design a rate limiter for a public API?" Three war stories sit behind the
//! question. A fixed-window counter (`INCR` a key per minute) lets a client spend its quota at
//! 12:00:59 and again at 12:01:00 — twice the limit inside one minute. An in-memory limiter
//! works on one box and multiplies the limit by the instance count behind the load balancer.
//! And a limiter whose Redis goes away takes the whole API with it, or silently stops limiting.
//!
//! The mechanism: state lives in Redis so every app instance sees the same counts, and each
//! algorithm is one Lua script — read, decide and write atomically, in one round trip. Time is
//! passed in (`now` from a [`clock::Clock`]) rather than read in Redis, so the lab drives it by
//! hand. An axum layer identifies the caller (API key, else IP), asks the limiter, answers 429
//! with `Retry-After` and the IETF draft `RateLimit-Policy`/`RateLimit` fields, and follows a
//! configured fail-open or fail-closed mode when Redis is down.
//!
//! | module | what it holds |
//! |---|---|
//! | [`policy`] | quota per period + burst, validated at startup |
//! | [`clock`] | system and manual clocks; why `now` is an argument |
//! | [`limiter`] | `check(key, now) -> Decision`, the algorithm list, the Redis plumbing |
//! | [`fixed_window`], [`sliding_log`], [`sliding_counter`] | window algorithms (one script each) |
//! | [`token_bucket`], [`gcra`] | bucket algorithms (one script each) |
//! | [`in_memory`] | governor's GCRA in process memory: the unshared contrast |
//! | [`middleware`] | the axum layers: caller identity, 429s and headers, fail modes |
//! | [`api`] | the demo routes, `router(state)` (the one place the app is assembled), JSON errors |
//! | [`config`] | `lab serve` settings from the environment |
//! | [`scenario`] | accuracy, instances, cost, Redis-down — the measurements |
//! | `run` | the lab run, as story → steps |
//! | [`report`] | findings, tables, notes and the sentence; [`FINDING_KEYS`] |

pub mod api;
pub mod clock;
pub mod config;
pub mod fixed_window;
pub mod gcra;
pub mod in_memory;
pub mod limiter;
pub mod middleware;
pub mod policy;
pub mod report;
mod run;
pub mod scenario;
pub mod sliding_counter;
pub mod sliding_log;
pub mod token_bucket;

use std::sync::Arc;

use labkit::{LabCtx, Report, ServeApp};

use crate::api::AppState;
use crate::clock::SystemClock;
use crate::config::LimitConfig;
use crate::limiter::RedisStore;
use crate::middleware::Limits;

pub use crate::report::FINDING_KEYS;

/// The `rate-limiter` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimiter;

#[labkit::async_trait]
impl labkit::Lab for RateLimiter {
    fn id(&self) -> &'static str {
        "rate-limiter"
    }

    fn title(&self) -> &'static str {
        run::TITLE
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    fn baseline(&self) -> Option<&'static str> {
        Some(include_str!("../baseline.json"))
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        run::run(ctx).await
    }

    async fn serve(&self, ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        // Validate before binding: a bad policy is a startup error, not a per-request surprise.
        serve(ctx, LimitConfig::from_env()?).await.map(Some)
    }
}

/// `lab serve rate-limiter`: one app instance on this run's Redis with `config`. Nothing
/// here outlives the returned router (`keep_alive` is empty: no task, no helper server, no
/// signal handler of its own), so the CLI's signal alone decides when and how it stops.
pub async fn serve(ctx: &LabCtx, config: LimitConfig) -> anyhow::Result<ServeApp> {
    let store = RedisStore::connect(ctx.redis_client(), ctx.redis_prefix()).await?;
    let limits = Limits::new(
        limiter::build(config.algorithm, config.policy, &store),
        Arc::new(SystemClock),
        config.fail_mode,
    );
    let router = api::router(AppState {
        instance: "serve".into(),
        limits: Some(limits),
    });
    let banner = format!(
        "rate limiter: {} with {} (fail-{}); change with RATE_LIMIT_ALGORITHM, RATE_LIMIT_POLICY, \
         RATE_LIMIT_FAIL_MODE\n\n{}",
        config.algorithm.name(),
        config.policy,
        config.fail_mode,
        include_str!("../curl.md"),
    );
    Ok(ServeApp {
        router,
        banner,
        keep_alive: Vec::new(),
    })
}
