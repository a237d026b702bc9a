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
            keep: false,
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
