//! Test helpers: a backend resolved exactly as the CLI resolves it, plus a scratch context.
//!
//! ```no_run
//! # async fn t() {
//! let t = labkit::testing::ctx("seek-vs-scan").await;   // smoke scale, seed 42
//! // ... use t.ctx.pg, t.ctx.redis, t.ctx.key("x") ...
//! t.finish().await;
//! # }
//! ```
//!
//! Without `DATABASE_URL`/`REDIS_URL` every test gets its own throwaway Postgres and Redis
//! (~0.7 s), so tests never depend on the machine's services and never share state. Set
//! `LAB_BACKEND=env` plus the URLs to run them against long-lived servers instead, still
//! with a scratch database per test.

use crate::backend::Backends;
use crate::ctx::{LabCtx, RunOptions, Scale};

/// A test's backend and scratch context. Field order matters: the context (scratch
/// database) drops before the servers it lives on.
pub struct TestCtx {
    pub ctx: LabCtx,
    pub backends: Backends,
}

impl std::fmt::Debug for TestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCtx").field("ctx", &self.ctx).finish()
    }
}

/// Smoke scale, seed 42.
pub async fn ctx(lab_id: &str) -> TestCtx {
    ctx_with(
        lab_id,
        RunOptions {
            scale: Scale::Smoke,
            seed: 42,
            ..RunOptions::default()
        },
    )
    .await
}

pub async fn ctx_with(lab_id: &str, opts: RunOptions) -> TestCtx {
    let backends = match Backends::from_env().await {
        Ok(b) => b,
        Err(e) => panic!("no backend for tests: {e}"),
    };
    let ctx = match LabCtx::new(&backends, lab_id, opts).await {
        Ok(c) => c,
        Err(e) => panic!("scratch context: {e}"),
    };
    TestCtx { ctx, backends }
}

impl TestCtx {
    /// Drop the scratch database and keys, then stop throwaway servers.
    pub async fn finish(self) {
        let TestCtx { ctx, backends } = self;
        ctx.finish().await;
        drop(backends);
    }
}

/// Whether this run is CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A precondition a test needs (a replica, a dedicated Redis). When it is there, its value.
/// When it is missing, the test must not silently pass: locally it is skipped with a line
/// on stderr saying why; under `CI=true` the test fails — except when `documented_absent`
/// names the environment this project documents as absent (no Docker engine here), and
/// then the message says so.
///
/// ```no_run
/// # async fn t(ctx: &labkit::LabCtx) {
/// let Some(replica) = labkit::testing::require(
///     "a streaming replica",
///     ctx.replica(&Default::default()).await,
///     None,
/// ) else { return };
/// # }
/// ```
pub fn require<T, E: std::fmt::Display>(
    what: &str,
    got: Result<T, E>,
    documented_absent: Option<&str>,
) -> Option<T> {
    match got {
        Ok(v) => Some(v),
        Err(e) => {
            if let Some(doc) = documented_absent {
                eprintln!("SKIPPED (documented as absent here: {doc}): needs {what}: {e}");
                return None;
            }
            if in_ci() {
                panic!("this test needs {what}, which is missing under CI: {e}");
            }
            eprintln!("SKIPPED locally (would fail under CI=true): needs {what}: {e}");
            None
        }
    }
}
