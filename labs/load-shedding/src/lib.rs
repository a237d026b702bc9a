//! Load shedding: goodput under a traffic spike, 503 + Retry-After, deadlines, priorities, pool size.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `load-shedding` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadShedding;

#[labkit::async_trait]
impl labkit::Lab for LoadShedding {
    fn id(&self) -> &'static str {
        "load-shedding"
    }

    fn title(&self) -> &'static str {
        "Load shedding: goodput under a traffic spike, 503 + Retry-After, deadlines, priorities, pool size"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
