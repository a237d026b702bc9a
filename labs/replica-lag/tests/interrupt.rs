//! Ctrl-C in the middle of a run: the CLI drops the run's future. Every standby and primary
//! the lab started must stop and disappear with it. In its own test binary (its own process),
//! so the `owner.pid` labkit writes into each server's directory identifies this run's servers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use lab_replica_lag::ReplicaLag;
use labkit::testing::{self, require};
use labkit::{RunOptions, Scale};

/// This process's labkit server directories, with their postmaster pid once started.
fn my_server_dirs() -> Vec<(PathBuf, Option<i32>)> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("labkit-"))
                && std::fs::read_to_string(p.join("owner.pid")).is_ok_and(|o| o.trim() == me)
        })
        .map(|p| {
            let pid = std::fs::read_to_string(p.join("data/postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()));
            (p, pid)
        })
        .collect()
}

/// Does the process exist? (labkit reaps its children, so no zombie keeps /proc/<pid>.)
fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
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
    let before: BTreeSet<PathBuf> = my_server_dirs().into_iter().map(|(p, _)| p).collect();

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
    // then "press Ctrl-C". Every server seen on the way is remembered.
    let mut seen: BTreeMap<PathBuf, i32> = BTreeMap::new();
    let started = async {
        loop {
            let alive: Vec<_> = my_server_dirs()
                .into_iter()
                .filter(|(p, _)| !before.contains(p))
                .filter_map(|(p, pid)| pid.map(|pid| (p, pid)))
                .collect();
            seen.extend(alive.iter().cloned());
            if alive.len() >= 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        outcome = run => panic!("the run finished before the remote_apply scenario was seen: {:?}", outcome.map(|o| o.report.skipped)),
        started = tokio::time::timeout(Duration::from_secs(300), started) => started.expect("servers started"),
    };
    // The run's future is dropped here, as the CLI drops it on Ctrl-C.

    assert!(
        seen.len() >= 4,
        "natural, delayed, sync primary, sync standby: {seen:?}"
    );
    for (dir, pid) in &seen {
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(
            !alive(*pid),
            "postmaster {pid} of {} still runs",
            dir.display()
        );
    }
    t.finish().await;
}
