//! Shared setup for the criterion benches: one bench target per lab in `benches/`.
//!
//! Each bench times one operation of its lab's story, one client, on data where the lab's
//! lesson shows, and ends with the ratio a reader would quote, in the lab's words.
//!
//! | module | what it does |
//! |---|---|
//! | this file | [`Bench`]: the runtime, a scratch [`LabCtx`] (throwaway, or a copy of the bench database), clean-up |
//! | [`cache`] | the bench database: seeded once per (lab, scale, seed, data version), kept, copied per run |
//! | [`server`] | the persistent local Postgres under `target/bench-pg` that keeps it between runs |
//! | [`summary`] | criterion's estimates of this run → the summary lines and `target/bench-summary/<id>.md` |
//! | [`iters`] | per-iteration isolation: reset mutated state outside the timed part |
//!
//! Where the data lives. Seeding a lab's default scale (2,000,000 invoices, say) takes tens of
//! seconds; a bench that re-seeds on every run is a bench nobody re-runs. So seeded data is
//! kept in a database of its own, `bench_<lab>_<scale>_s<seed>_v<version>`, on a server that
//! outlives the bench: your `DATABASE_URL`/`REDIS_URL` when both are set, otherwise a
//! Postgres cluster in `target/bench-pg` that each bench process starts on a free port and
//! stops at exit (nothing keeps running between benches; the data dir stays). Every run then
//! measures on a fresh *copy* of it (`CREATE DATABASE … TEMPLATE`, about a second for the
//! biggest), a normal scratch database that is dropped at the end like a lab's — so a bench may
//! drop indexes, VACUUM or insert freely and the next run starts from the same state.
//! `BENCH_FRESH=1` rebuilds the bench database; a changed scale, seed or data version builds a
//! new one and drops the old. Benches whose setup takes well under a second, or that need
//! what only the throwaway local backend gives (a replica, a dedicated Postgres), use
//! [`Bench::throwaway`] instead: a throwaway backend exactly as the labs and tests use it.
//!
//! `cargo bench -p benches -- --test` (what CI runs) executes every benchmark once; in that
//! mode [`scale`] gives the smoke scale, so no bench seeds millions of rows to run one query.
//! `BENCH_SCALE=smoke|default|large` overrides the scale either way.
//!
//! labkit's `docker` feature is off here on purpose: it would compile the Docker client
//! chain in release for every bench build (~3 min cold) and benches do not need it.

pub mod cache;
pub mod iters;
pub mod server;
pub mod summary;

use std::future::Future;
use std::path::PathBuf;
use std::time::SystemTime;

use labkit::testing::{TestCtx, ctx_with};
use labkit::{Backends, LabCtx, RunOptions, Scale};

pub use summary::Summary;

/// The seed every bench uses (the labs' default).
pub const SEED: u64 = 42;

/// A multi-threaded runtime for `b.to_async(&rt)`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A throwaway backend and scratch context for `lab_id` at `scale` (seed 42), created on `rt`.
/// Prefer [`Bench::throwaway`], which also cleans up and writes the summary.
pub fn ctx(rt: &tokio::runtime::Runtime, lab_id: &str, scale: Scale) -> TestCtx {
    rt.block_on(ctx_with(lab_id, run_options(scale)))
}

fn run_options(scale: Scale) -> RunOptions {
    RunOptions {
        scale,
        seed: SEED,
        ..RunOptions::default()
    }
}

/// `cargo bench … -- --test`: criterion runs every benchmark once, to check it runs.
pub fn test_mode() -> bool {
    std::env::args().skip(1).any(|a| a == "--test")
}

/// The scale a bench seeds: `BENCH_SCALE` if set, else smoke under `--test` (CI: one
/// iteration per benchmark does not need millions of rows), else `full` — the scale where the
/// lab's lesson shows.
pub fn scale(full: Scale) -> Scale {
    if let Ok(s) = std::env::var("BENCH_SCALE")
        && !s.trim().is_empty()
    {
        return s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("BENCH_SCALE: {e}"));
    }
    if test_mode() { Scale::Smoke } else { full }
}

/// cargo's target directory: the ancestor of this bench executable that holds cargo's
/// `CACHEDIR.TAG` (works with `CARGO_TARGET_DIR` too), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
}

/// One bench's world: the runtime, its scratch context and (for cached data) the server the
/// bench database lives on. Field order is drop order: context, runtime, then the server.
pub struct Bench {
    pub id: &'static str,
    /// The scale the data was seeded at (see [`scale`]).
    pub scale: Scale,
    t: Option<TestCtx>,
    pub rt: tokio::runtime::Runtime,
    server: Option<server::BenchServer>,
    where_: String,
    started: SystemTime,
}

impl Bench {
    /// A throwaway backend, as the labs and tests use: local servers in a temp dir (or a
    /// scratch database on `DATABASE_URL`), deleted at the end. For benches whose setup is
    /// cheap, or that need a replica or a dedicated Postgres.
    pub fn throwaway(id: &'static str, scale: Scale) -> Self {
        let started = SystemTime::now();
        let rt = runtime();
        let t = ctx(&rt, id, scale);
        let where_ = format!("throwaway {} backend", t.backends.kind);
        Self {
            id,
            scale,
            t: Some(t),
            rt,
            server: None,
            where_,
            started,
        }
    }

    /// Data seeded once by `seed` and kept in the bench database (see the crate docs); this
    /// run measures on a fresh copy of it. `version` names the data's shape: bump it when
    /// the seed or the schema changes, and the next run rebuilds.
    ///
    /// Without `DATABASE_URL`/`REDIS_URL` it starts the persistent local cluster (see
    /// [`server`]) for the length of the bench.
    pub fn cached<F>(id: &'static str, scale: Scale, version: u32, seed: F) -> Self
    where
        F: AsyncFnOnce(&LabCtx) -> anyhow::Result<()>,
    {
        let started = SystemTime::now();
        let rt = runtime();
        let (t, where_, server) = rt
            .block_on(async {
                let user_servers = ["DATABASE_URL", "REDIS_URL"]
                    .iter()
                    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
                let (backends, server) = if user_servers {
                    // Both, or labkit's error naming the missing one.
                    (Backends::from_env().await?, None)
                } else {
                    let server =
                        server::BenchServer::start(&server::BenchServer::default_dir()).await?;
                    (server.backends().await?, Some(server))
                };
                let (t, where_) =
                    cache::open(backends, id, run_options(scale), version, seed).await?;
                anyhow::Ok((t, where_, server))
            })
            .unwrap_or_else(|e| panic!("{id} bench: bench database: {e:#}"));
        let where_ = match &server {
            Some(s) => format!("{where_}, on the bench cluster in {}", s.shown_dir()),
            None => format!("{where_}, on DATABASE_URL's server"),
        };
        Self {
            id,
            scale,
            t: Some(t),
            rt,
            server,
            where_,
            started,
        }
    }

    /// The scratch context: `ctx().pg`, `ctx().redis`, `ctx().key(..)`, `ctx().seed`.
    pub fn ctx(&self) -> &LabCtx {
        &self
            .t
            .as_ref()
            .expect("the bench context is alive until finish")
            .ctx
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The summary of `group` from criterion's estimates of this run (see [`Summary`]).
    pub fn summary(&self, group: &str, data: impl Into<String>) -> Summary {
        let env = &self.ctx().environment;
        let setting = |k: &str| env.postgres_settings.get(k).map_or("?", String::as_str);
        let machine = format!(
            "{} cores, {}, {:.0} GiB; PostgreSQL {} (fsync={}, synchronous_commit={}, \
             shared_buffers={}), Redis {}; {}",
            env.cores,
            env.cpu,
            env.memory_gib,
            env.postgres_version
                .split_whitespace()
                .next()
                .unwrap_or("?"),
            setting("fsync"),
            setting("synchronous_commit"),
            setting("shared_buffers"),
            env.redis_version,
            self.where_,
        );
        Summary::new(self.id, group, self.started, data.into(), machine)
    }

    /// Drop the scratch database and keys, then stop what this bench started.
    pub fn finish(mut self) {
        if let Some(t) = self.t.take() {
            self.rt.block_on(t.finish());
        }
        // The bench cluster stops last, once nothing is connected to it.
        drop(self.server.take());
    }
}
