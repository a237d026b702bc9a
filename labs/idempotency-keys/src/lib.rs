//! Idempotency keys: exactly-once POSTs over retries, races, crashes and webhooks.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `idempotency-keys` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdempotencyKeys;

#[labkit::async_trait]
impl labkit::Lab for IdempotencyKeys {
    fn id(&self) -> &'static str {
        "idempotency-keys"
    }

    fn title(&self) -> &'static str {
        "Idempotency keys: exactly-once POSTs over retries, races, crashes and webhooks"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `idempotency-keys` is not implemented yet")
    }
}
