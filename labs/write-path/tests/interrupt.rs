//! Ctrl-C in the middle of a run: the CLI drops the run's future. The lab's own Postgres
//! (fsync on) and its own Redis must stop and their directories disappear with it. In its
//! own test binary (its own process), so `owner.pid` in labkit's server directories
//! identifies this run's servers.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use lab_write_path::WritePath;
use labkit::testing::{my_server_dirs, processes_in};
use labkit::{RunOptions, Scale};

#[tokio::test]
async fn interrupting_the_run_stops_the_labs_own_postgres_and_redis() {
    let t = labkit::testing::ctx("write-path").await;
    let Some(probe) = labkit::testing::require(
        "a dedicated Redis",
        t.ctx.dedicated_redis(&Default::default()).await,
        None,
    ) else {
        return;
    };
    drop(probe);
    let before = my_server_dirs();
    let run = labkit::run_lab(
        &WritePath,
        &t.backends,
        RunOptions {
            scale: Scale::Smoke,
            ..RunOptions::default()
        },
    );
    // The dedicated Redis is the last server the run starts: once it and the dedicated
    // Postgres are both up, "press Ctrl-C".
    let started = async {
        loop {
            let mine: BTreeSet<PathBuf> = my_server_dirs().difference(&before).cloned().collect();
            let named = |what: &str| {
                mine.iter()
                    .any(|p| p.to_string_lossy().contains(&format!("labkit-{what}-")))
            };
            if named("pg") && named("redis") {
                return mine;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let servers = tokio::select! {
        outcome = run => panic!("the run finished before its servers were seen: {:?}",
                                outcome.map(|o| o.report.skipped)),
        servers = tokio::time::timeout(Duration::from_secs(300), started) =>
            servers.expect("servers started"),
    };
    // The run's future was dropped by select!, as the CLI drops it on Ctrl-C.
    assert!(
        servers.iter().all(|d| !d.exists()),
        "left behind: {servers:?}"
    );
    assert_eq!(processes_in(&servers), Vec::<String>::new());
    t.finish().await;
}
