//! Composite index seek vs scan: column order, INCLUDE and VACUUM.
//!
//! Placeholder: this lab is not written yet.

use labkit::{LabCtx, Report};

/// The `seek-vs-scan` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeekVsScan;

#[labkit::async_trait]
impl labkit::Lab for SeekVsScan {
    fn id(&self) -> &'static str {
        "seek-vs-scan"
    }

    fn title(&self) -> &'static str {
        "Composite index seek vs scan: column order, INCLUDE and VACUUM"
    }

    async fn run(&self, _ctx: &LabCtx) -> anyhow::Result<Report> {
        anyhow::bail!("lab `seek-vs-scan` is not implemented yet")
    }
}
