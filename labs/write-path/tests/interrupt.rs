//! Ctrl-C in the middle of a run: the CLI drops the run's future. The lab's own Postgres
//! (fsync on) and its own Redis must stop and their directories disappear with it. In its
//! own test binary (its own process), so `owner.pid` in labkit's server directories
//! identifies this run's servers.

use lab_write_path::WritePath;
use labkit::testing::{interrupt_when, require};

#[tokio::test]
async fn interrupting_the_run_stops_the_labs_own_postgres_and_redis() {
    let t = labkit::testing::ctx("write-path").await;
    let Some(probe) = require(
        "a dedicated Redis",
        t.ctx.dedicated_redis(&Default::default()).await,
        None,
    ) else {
        return;
    };
    drop(probe);
    // The dedicated Redis is the last server the run starts: once it and the dedicated
    // Postgres are both up, "press Ctrl-C".
    let named = |dirs: &std::collections::BTreeSet<std::path::PathBuf>, what: &str| {
        dirs.iter()
            .any(|p| p.to_string_lossy().contains(&format!("labkit-{what}-")))
    };
    let seen = interrupt_when(&WritePath, &t, |running| {
        named(running, "pg") && named(running, "redis")
    })
    .await;
    assert!(named(&seen, "pg") && named(&seen, "redis"), "{seen:?}");
    t.finish().await;
}
