//! The persistent local Postgres the bench databases live in, when no `DATABASE_URL` is set.
//!
//! labkit's throwaway cluster is deleted at exit, which is right for labs and tests and wrong
//! for data that took a minute to seed. This one is labkit's [`LocalPostgres::start_kept`]:
//! the same binaries and settings as a lab's throwaway cluster, its data dir kept in
//! `target/bench-pg` (`BENCH_PG_DIR` overrides), running only while a bench runs:
//!
//! - each bench process starts it on a free 127.0.0.1 port (plus a throwaway Redis, since a
//!   lab context needs one) and stops it when the bench ends; labkit's parent-death signal
//!   stops it even when the bench is killed; nothing stays running between benches;
//! - one bench at a time: an exclusive lock on `target/bench-pg/lock` (a second `cargo
//!   bench` waits);
//! - the data dir is deleted only when it is stale: made by another major version of
//!   Postgres, or unable to start (it only holds caches; they are rebuilt). `BENCH_FRESH=1`
//!   rebuilds a bench's database, not the cluster; `rm -rf target/bench-pg` removes it all.
//!
//! It is reached like any user's server, through labkit's `env` backend
//! ([`Backends::from_urls`]): scratch databases, owner marks, and the sweep of scratch
//! databases left by killed runs work unchanged.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use labkit::Backends;
use labkit::backend::local::LocalBins;
use labkit::backend::{LocalPostgres, LocalRedis, PostgresOptions, RedisOptions};

/// The running bench cluster and its Redis. Stopped on drop (Postgres first); the data dir
/// stays.
pub struct BenchServer {
    pg: LocalPostgres,
    redis: LocalRedis,
    dir: PathBuf,
    _lock: File,
}

impl BenchServer {
    /// `target/bench-pg`, or `BENCH_PG_DIR`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("BENCH_PG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::target_dir().join("bench-pg"))
    }

    /// Start the bench cluster in `dir` (waiting for another bench that holds it).
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let lock = File::create(dir.join("lock"))?;
        if lock.try_lock().is_err() {
            eprintln!(
                "bench cluster: another bench is using {}; waiting for it",
                dir.display()
            );
            let lock = lock.try_clone()?;
            tokio::task::spawn_blocking(move || lock.lock()).await??;
        }
        let bins = LocalBins::find().map_err(anyhow::Error::msg)?;
        let data = dir.join("data");
        if let Some(stale) = stale_reason(&data, &bins) {
            eprintln!("bench cluster: {stale}; re-creating {}", data.display());
            fs::remove_dir_all(&data)?;
        }
        let fresh = !data.join("PG_VERSION").is_file();
        let opts = PostgresOptions::default();
        let pg = match LocalPostgres::start_kept(&bins, dir, &opts).await {
            Ok(pg) => pg,
            Err(e) if !fresh => {
                // It only holds caches: a cluster that cannot start is rebuilt, not debugged.
                eprintln!(
                    "bench cluster: {e}\nbench cluster: re-creating {}",
                    data.display()
                );
                fs::remove_dir_all(&data)?;
                LocalPostgres::start_kept(&bins, dir, &opts).await?
            }
            Err(e) => return Err(e.into()),
        };
        let redis = LocalRedis::start(&bins, &RedisOptions::default()).await?;
        Ok(Self {
            pg,
            redis,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// labkit's `env` backend on this cluster and its Redis.
    pub async fn backends(&self) -> anyhow::Result<Backends> {
        Ok(Backends::from_urls(&self.pg.url("postgres"), &self.redis.url()).await?)
    }

    /// The data dir as a README may show it: relative to the workspace when inside it.
    pub fn shown_dir(&self) -> String {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
        workspace
            .and_then(|w| self.dir.strip_prefix(w).ok())
            .unwrap_or(&self.dir)
            .display()
            .to_string()
    }
}

/// Why the data dir cannot be used as it is, if it cannot.
fn stale_reason(data: &Path, bins: &LocalBins) -> Option<String> {
    if !data.exists() {
        return None;
    }
    let Ok(version) = fs::read_to_string(data.join("PG_VERSION")) else {
        return Some("the data dir has no PG_VERSION (an interrupted initdb)".into());
    };
    let out = Command::new(bins.pg_bin_dir.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    // "postgres (PostgreSQL) 15.20 (Debian …)" → "15"
    let text = String::from_utf8_lossy(&out.stdout);
    let major = text
        .split_whitespace()
        .nth(2)?
        .split('.')
        .next()?
        .to_string();
    (version.trim() != major).then(|| {
        format!(
            "the data dir was made by PostgreSQL {}, the binaries are {major}",
            version.trim()
        )
    })
}
