//! Ctrl-C in the middle of a run: the CLI drops the run's future. Every standby and primary
//! the lab started must stop and disappear with it. In its own test binary (its own process),
//! so the `owner.pid` labkit writes into each server's directory identifies this run's servers.

use lab_replica_lag::ReplicaLag;
use labkit::testing::{self, interrupt_when, require};

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
    // Interrupt once the remote_apply scenario runs: the streaming standby, the scenario's
    // own primary and that primary's standby are up (their postmasters wrote their pid; the
    // delayed standby has come and gone).
    let seen = interrupt_when(&ReplicaLag, &t, |running| {
        running
            .iter()
            .filter(|d| d.join("data/postmaster.pid").exists())
            .count()
            >= 3
    })
    .await;
    assert!(
        seen.len() >= 4,
        "natural, delayed, sync primary, sync standby: {seen:?}"
    );
    t.finish().await;
}
