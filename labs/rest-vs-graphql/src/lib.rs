//! REST vs GraphQL: the N+1, DataLoader, BFF and query limits.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `rest-vs-graphql` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestVsGraphql;

#[labkit::async_trait]
impl labkit::Lab for RestVsGraphql {
    fn id(&self) -> &'static str {
        "rest-vs-graphql"
    }

    fn title(&self) -> &'static str {
        "REST vs GraphQL: the N+1, DataLoader, BFF and query limits"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `rest-vs-graphql` is not implemented yet")
    }
}
