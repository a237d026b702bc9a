//! The write path: batching, COPY, commit cost, pool size and an async write queue.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `write-path` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct WritePath;

#[labkit::async_trait]
impl labkit::Lab for WritePath {
    fn id(&self) -> &'static str {
        "write-path"
    }

    fn title(&self) -> &'static str {
        "The write path: batching, COPY, commit cost, pool size and an async write queue"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
