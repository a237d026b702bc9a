//! Outbox and saga: the dual write that loses events, the transactional outbox, compensations.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `outbox-saga` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxSaga;

#[labkit::async_trait]
impl labkit::Lab for OutboxSaga {
    fn id(&self) -> &'static str {
        "outbox-saga"
    }

    fn title(&self) -> &'static str {
        "Outbox and saga: the dual write that loses events, the transactional outbox, compensations"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
