//! Ctrl-C in the middle of a run: the CLI drops the run's future. Every standby and primary
//! the lab started must stop and disappear with it. In its own test binary (its own process),
//! so the `owner.pid` labkit writes into each server's directory identifies this run's servers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lab_replica_lag::ReplicaLag;
use labkit::testing::{self, my_server_dirs, processes_in, require};
use labkit::{RunOptions, Scale};

/// Has the server in `dir` started (its postmaster wrote `postmaster.pid`)?
fn started(dir: &Path) -> bool {
    dir.join("data/postmaster.pid").exists()
}

#[tokio::test]
async fn interrupting_the_run_stops_every_server_it_started_and_deletes_their_directories() {
    let t = testing::ctx("replica-lag").await;
    let Some(probe) = require(
        "a streaming replica",
        t.ctx.replica(&Default::default()).await,
        None,
    ) else {
        return;
    };
    drop(probe);
    let before = my_server_dirs();

    let run = labkit::run_lab(
        &ReplicaLag,
        &t.backends,
        RunOptions {
            scale: Scale::Smoke,
            ..RunOptions::default()
        },
    );
    // Watch until the remote_apply scenario runs — the streaming standby, the scenario's own
    // primary and that primary's standby are up (the delayed standby has come and gone) —
    // then "press Ctrl-C". Every server seen started on the way is remembered.
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let up = async {
        loop {
            let running: BTreeSet<PathBuf> = my_server_dirs()
                .difference(&before)
                .filter(|d| started(d))
                .cloned()
                .collect();
            seen.extend(running.iter().cloned());
            if running.len() >= 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        outcome = run => panic!("the run finished before the remote_apply scenario was seen: {:?}", outcome.map(|o| o.report.skipped)),
        up = tokio::time::timeout(Duration::from_secs(300), up) => up.expect("servers started"),
    };
    // The run's future is dropped here, as the CLI drops it on Ctrl-C.

    assert!(
        seen.len() >= 4,
        "natural, delayed, sync primary, sync standby: {seen:?}"
    );
    for dir in &seen {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    assert_eq!(
        processes_in(&seen),
        Vec::<String>::new(),
        "servers still run out of the run's directories"
    );
    t.finish().await;
}
