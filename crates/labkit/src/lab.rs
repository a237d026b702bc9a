//! The contract between a lab and the harness.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;

use crate::backend::Backends;
use crate::ctx::{LabCtx, RunOptions};
use crate::report::{Phase, Report};

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
    /// The finding keys this lab promises (its `pub const FINDING_KEYS`): users' scripts
    /// parse them, and the CLI test checks every one is in a smoke run's JSON.
    fn finding_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// The committed run whose numbers the lab's README shows (`baseline.json`, written by
    /// `scripts/update-readme-numbers.sh`), for `lab run <id> --baseline`.
    fn baseline(&self) -> Option<&'static str> {
        None
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
    let phases: Arc<Mutex<Vec<Phase>>> = Arc::default();
    let result = crate::measure::with_phase_log(phases.clone(), lab.run(&ctx)).await;
    let mut report = match result {
        Ok(mut report) => {
            ctx.stamp_load(&mut report);
            Ok(report)
        }
        Err(e) => Err(e),
    };
    let kept_database = ctx.finish().await;
    if let Ok(report) = &mut report {
        // Stamped here, not when the lab built its Report (often at the end of the run).
        report.started_at = started_at;
        report.duration_s = started.elapsed().as_secs_f64();
        report.phases = std::mem::take(&mut *phases.lock().unwrap_or_else(|e| e.into_inner()));
        for p in &report.phases {
            // Unless the lab already said so itself (`Schedule::warning`).
            let said = report
                .notes
                .iter()
                .any(|n| n.starts_with(&format!("{}:", p.name)) && n.contains("open-loop driver"));
            if let Some(late) = p.send_late_p99_ms.filter(|l| *l > 1.0 && !said) {
                report.notes.push(format!(
                    "{}: the open-loop driver sent requests {late:.2} ms late at p99; that \
                     lateness is part of the latencies measured in that phase.",
                    p.name
                ));
            }
        }
    }
    let report = report?;
    Ok(RunOutcome {
        report,
        kept_database,
    })
}
