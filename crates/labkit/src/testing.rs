//! Test helpers: a backend resolved exactly as the CLI resolves it, plus a scratch context.
//!
//! ```no_run
//! # async fn t() {
//! let t = labkit::testing::ctx("seek-vs-scan").await;   // smoke scale, seed 42
//! // ... use t.ctx.pg, t.ctx.redis, t.ctx.key("x") ...
//! t.finish().await;
//! # }
//! ```
//!
//! Without `DATABASE_URL`/`REDIS_URL` every test gets its own throwaway Postgres and Redis
//! (~0.7 s), so tests never depend on the machine's services and never share state. Set
//! `LAB_BACKEND=env` plus the URLs to run them against long-lived servers instead, still
//! with a scratch database per test.

use crate::backend::Backends;
use crate::ctx::{LabCtx, RunOptions, Scale};

/// A test's backend and scratch context. Field order matters: the context (scratch
/// database) drops before the servers it lives on.
pub struct TestCtx {
    pub ctx: LabCtx,
    pub backends: Backends,
}

impl std::fmt::Debug for TestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCtx").field("ctx", &self.ctx).finish()
    }
}

/// Smoke scale, seed 42.
pub async fn ctx(lab_id: &str) -> TestCtx {
    ctx_with(
        lab_id,
        RunOptions {
            scale: Scale::Smoke,
            seed: 42,
            ..RunOptions::default()
        },
    )
    .await
}

pub async fn ctx_with(lab_id: &str, opts: RunOptions) -> TestCtx {
    let backends = match Backends::from_env().await {
        Ok(b) => b,
        Err(e) => panic!("no backend for tests: {e}"),
    };
    let ctx = match LabCtx::new(&backends, lab_id, opts).await {
        Ok(c) => c,
        Err(e) => panic!("scratch context: {e}"),
    };
    TestCtx { ctx, backends }
}

impl TestCtx {
    /// Drop the scratch database and keys, then stop throwaway servers.
    pub async fn finish(self) {
        let TestCtx { ctx, backends } = self;
        ctx.finish().await;
        drop(backends);
    }
}

/// Whether this run is CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A precondition a test needs (a replica, a dedicated Redis). When it is there, its value.
/// When it is missing, the test must not silently pass: locally it is skipped with a line
/// on stderr saying why; under `CI=true` the test fails — except when `documented_absent`
/// names the environment this project documents as absent (no Docker engine here), and
/// then the message says so.
///
/// ```no_run
/// # async fn t(ctx: &labkit::LabCtx) {
/// let Some(replica) = labkit::testing::require(
///     "a streaming replica",
///     ctx.replica(&Default::default()).await,
///     None,
/// ) else { return };
/// # }
/// ```
pub fn require<T, E: std::fmt::Display>(
    what: &str,
    got: Result<T, E>,
    documented_absent: Option<&str>,
) -> Option<T> {
    match got {
        Ok(v) => Some(v),
        Err(e) => {
            if let Some(doc) = documented_absent {
                eprintln!("SKIPPED (documented as absent here: {doc}): needs {what}: {e}");
                return None;
            }
            if in_ci() {
                panic!("this test needs {what}, which is missing under CI: {e}");
            }
            eprintln!("SKIPPED locally (would fail under CI=true): needs {what}: {e}");
            None
        }
    }
}

/// Run `lab` at smoke scale on `t`'s backend, the way the CLI would, and check the contract
/// every lab keeps with its users' scripts: every key it promises (`Lab::finding_keys`) is in
/// the report with a finite value, and every latency (unit "ms") says how many samples it
/// rests on. Returns the report for the lab's own assertions (its invariants).
pub async fn smoke_run_keeps_its_contract(lab: &dyn crate::Lab, t: &TestCtx) -> crate::Report {
    smoke_run_with(lab, t, crate::LoadKnobs::default()).await
}

/// [`smoke_run_keeps_its_contract`] with load knobs set (as `--clients` etc. would).
pub async fn smoke_run_with(
    lab: &dyn crate::Lab,
    t: &TestCtx,
    load: crate::LoadKnobs,
) -> crate::Report {
    let outcome = crate::run_lab(lab, &t.backends, smoke(load))
        .await
        .unwrap_or_else(|e| panic!("{} at smoke scale failed: {e:#}", lab.id()));
    let report = outcome.report;
    assert!(
        !lab.finding_keys().is_empty(),
        "{} promises no finding keys (FINDING_KEYS)",
        lab.id()
    );
    for key in lab.finding_keys() {
        let f = report
            .finding_by_key(key)
            .unwrap_or_else(|| panic!("{}: promised finding `{key}` is missing", lab.id()));
        assert!(f.value.is_finite(), "{}: `{key}` = {}", lab.id(), f.value);
    }
    for f in &report.findings {
        if f.unit == "ms" {
            assert!(
                f.samples.is_some_and(|n| n > 0),
                "{}: latency `{}` does not say how many samples it rests on",
                lab.id(),
                f.key
            );
        }
    }
    report
}

/// The options of a smoke run, as `lab run <id> --scale smoke` with these knobs.
fn smoke(load: crate::LoadKnobs) -> RunOptions {
    RunOptions {
        scale: Scale::Smoke,
        load,
        ..RunOptions::default()
    }
}

/// The labkit server directories (`/tmp/labkit-*`) this process started: their `owner.pid`
/// is this process. With [`processes_in`], a test proves an interrupted run left nothing.
pub fn my_server_dirs() -> std::collections::BTreeSet<std::path::PathBuf> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Default::default();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("labkit-"))
                && std::fs::read_to_string(p.join("owner.pid")).is_ok_and(|o| o.trim() == me)
        })
        .collect()
}

/// Processes whose command line names one of `dirs` (`postgres -D <dir>/data`,
/// `redis-server --dir <dir>`): the servers still running out of them.
pub fn processes_in(dirs: &std::collections::BTreeSet<std::path::PathBuf>) -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|cmd| dirs.iter().any(|d| cmd.contains(&*d.to_string_lossy())))
        .collect()
}

/// "Press Ctrl-C" in the middle of a smoke run of `lab`, the way the CLI does (it drops the
/// run's future), once `now` says so, then check nothing the run started is left: no server
/// directory, no process running out of one.
///
/// `now` is called every 20 ms with the labkit server directories this run has started so
/// far (still present); the run is dropped the first time it returns true. Returns every
/// directory seen on the way, for the test's own assertions (how many servers it saw).
/// Panics if the run finishes first, or takes more than 5 minutes to get there.
///
/// Run it in a test binary of its own: directories are told apart by `owner.pid`, this
/// process.
pub async fn interrupt_when(
    lab: &dyn crate::Lab,
    t: &TestCtx,
    mut now: impl FnMut(&std::collections::BTreeSet<std::path::PathBuf>) -> bool,
) -> std::collections::BTreeSet<std::path::PathBuf> {
    use std::time::Duration;
    let before = my_server_dirs();
    let run = crate::run_lab(lab, &t.backends, smoke(crate::LoadKnobs::default()));
    let mut seen = std::collections::BTreeSet::new();
    let watch = async {
        loop {
            let running: std::collections::BTreeSet<_> =
                my_server_dirs().difference(&before).cloned().collect();
            seen.extend(running.iter().cloned());
            if now(&running) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        outcome = run => panic!(
            "{}: the run finished before the moment to interrupt it: {:?}",
            lab.id(),
            outcome.map(|o| o.report.skipped)
        ),
        watched = tokio::time::timeout(Duration::from_secs(300), watch) =>
            watched.expect("the moment to interrupt came within 5 minutes"),
    }
    // The run's future is dropped here, as the CLI drops it on Ctrl-C.
    let left: Vec<_> = seen.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "{}: left behind: {left:?}", lab.id());
    assert_eq!(
        processes_in(&seen),
        Vec::<String>::new(),
        "{}: servers still run out of the run's directories",
        lab.id()
    );
    seen
}
