//! Replica lag: a real streaming replica, read-your-writes, and what each fix costs.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `replica-lag` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaLag;

#[labkit::async_trait]
impl labkit::Lab for ReplicaLag {
    fn id(&self) -> &'static str {
        "replica-lag"
    }

    fn title(&self) -> &'static str {
        "Replica lag: a real streaming replica, read-your-writes, and what each fix costs"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
