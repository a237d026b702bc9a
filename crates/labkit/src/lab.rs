//! The contract between a lab and the harness.

use std::any::Any;
use std::time::Instant;

use async_trait::async_trait;

use crate::backend::Backends;
use crate::ctx::{LabCtx, RunOptions};
use crate::report::Report;

/// One war story. `run` reproduces it on `ctx` and returns the measured report.
#[async_trait]
pub trait Lab: Send + Sync {
    /// Stable id, used on the command line and as the report's `lab` (e.g. `seek-vs-scan`).
    fn id(&self) -> &'static str;
    /// One-line title.
    fn title(&self) -> &'static str;
    /// Run the lab at `ctx.scale` and measure. Seeding happens in here.
    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report>;
    /// Labs with an HTTP server build it here (seeding what it needs) for `lab serve`.
    async fn serve(&self, _ctx: &LabCtx) -> anyhow::Result<Option<ServeApp>> {
        Ok(None)
    }
}

/// What `lab serve` binds: the lab's router and the curl examples to print.
pub struct ServeApp {
    pub router: axum::Router,
    /// Printed once the server listens; `{base}` is replaced by `http://127.0.0.1:PORT`.
    pub banner: String,
    /// Anything that must live as long as the server (helper servers, background tasks).
    pub keep_alive: Vec<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for ServeApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeApp")
            .field("banner", &self.banner)
            .finish()
    }
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    /// The scratch database URL when `--keep` kept it.
    pub kept_database: Option<String>,
}

/// Create the scratch context, run the lab, stamp the duration, clean up. The one path
/// the CLI, each lab's `main.rs` and the tests share.
pub async fn run_lab(
    lab: &dyn Lab,
    backends: &Backends,
    opts: RunOptions,
) -> anyhow::Result<RunOutcome> {
    let ctx = LabCtx::new(backends, lab.id(), opts).await?;
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let result = lab.run(&ctx).await;
    let kept_database = ctx.finish().await;
    let mut report = result?;
    // Stamped here, not when the lab built its Report (often at the end of the run).
    report.started_at = started_at;
    report.duration_s = started.elapsed().as_secs_f64();
    Ok(RunOutcome {
        report,
        kept_database,
    })
}
