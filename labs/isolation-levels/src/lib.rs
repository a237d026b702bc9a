//! Isolation levels: what each Postgres level prevents, by running the anomalies.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `isolation-levels` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct IsolationLevels;

#[labkit::async_trait]
impl labkit::Lab for IsolationLevels {
    fn id(&self) -> &'static str {
        "isolation-levels"
    }

    fn title(&self) -> &'static str {
        "Isolation levels: what each Postgres level prevents, by running the anomalies"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `isolation-levels` is not implemented yet")
    }
}
