//! Locking and queues: optimistic vs pessimistic, and Postgres as a job queue with SKIP LOCKED.
//!
//! (Being built: see the issue for this lab.)

use labkit::{LabCtx, Report};

/// The finding keys this lab promises.
pub const FINDING_KEYS: &[&str] = &[];

/// The `locking-and-queues` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockingAndQueues;

#[labkit::async_trait]
impl labkit::Lab for LockingAndQueues {
    fn id(&self) -> &'static str {
        "locking-and-queues"
    }

    fn title(&self) -> &'static str {
        "Locking and queues: optimistic vs pessimistic, and Postgres as a job queue with SKIP LOCKED"
    }

    fn finding_keys(&self) -> &'static [&'static str] {
        FINDING_KEYS
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        Ok(ctx.report(self.title()))
    }
}
