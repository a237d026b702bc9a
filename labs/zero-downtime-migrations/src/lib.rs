//! Zero-downtime migrations: the lock queue, CONCURRENTLY, NOT VALID and expand/contract.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `zero-downtime-migrations` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroDowntimeMigrations;

#[labkit::async_trait]
impl labkit::Lab for ZeroDowntimeMigrations {
    fn id(&self) -> &'static str {
        "zero-downtime-migrations"
    }

    fn title(&self) -> &'static str {
        "Zero-downtime migrations: the lock queue, CONCURRENTLY, NOT VALID and expand/contract"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
