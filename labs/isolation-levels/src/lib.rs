//! Isolation levels: what each Postgres level prevents, shown by running the anomalies.
//!
//! The war story: a payments service moves money between accounts with "read both balances,
//! check, write both balances" at Postgres's default level, read committed. Under load, a
//! few accounts drift from their ledgers: two transfers read the same balance and the second
//! write silently overwrites the first (a lost update). The interview version of the
//! question is "what do the isolation levels actually protect against?", and most answers
//! recite the SQL standard's table — which is not what Postgres does.
//!
//! So this lab does not recite; it runs. Each anomaly from Hermitage (dirty write, aborted
//! and intermediate reads, circular information flow, observed-transaction-vanishes,
//! predicate-many-preceders, lost update, read skew, write skew, anti-dependency cycles) is a
//! script of interleaved statements from two or three transactions, each on its own
//! connection. The engine sends the steps in order, detects a step that waits on a lock
//! (Postgres's `pg_blocking_pids`, not a timeout guess), moves on to the other transaction,
//! and records what every step saw — rows, waits, SQLSTATEs. A judge per scenario looks at
//! those observations and says whether the anomaly happened; the matrix is built from that.
//! Then a money-transfer workload puts the same question under load: read committed without
//! locks, `SELECT ... FOR UPDATE` (in the wrong and the right lock order), repeatable read
//! and serializable with a retry loop on 40001 — and audits the books after each.
//!
//! Module map:
//!
//! | module | what it holds |
//! |---|---|
//! | [`interleave`] | the engine: scripts, one task per transaction, lock-wait detection, transcripts |
//! | [`anomalies`] | the isolation levels, the eleven Hermitage scenarios and their judges |
//! | [`deadlock`] | two opposite transfers as scripts: opposite lock order (40P01) vs lower id first |
//! | [`transfers`] | the transfer workload, its modes, the retry loop and the ledger audit |
//!
//! Finding keys (JSON contract):
//!
//! - `<anomaly>_<level>`: 1 = the anomaly happened in this run, 0 = prevented. `<anomaly>` is
//!   one of `g0 g1a g1b g1c otv pmp_read pmp_write p4 g_single g2_item g2`, `<level>` one of
//!   `read_uncommitted read_committed repeatable_read serializable`
//!   (e.g. `g2_item_read_committed`).
//! - `serialization_failure_pct_<level>`: share of the scenarios' transactions at that level
//!   that Postgres aborted with 40001.
//! - `transfer_invariant_violations_<mode>`: accounts whose balance disagrees with opening
//!   balance + committed ledger, or is negative, after the mode's run; `<mode>` is one of
//!   `read_committed for_update_unordered for_update repeatable_read serializable`.
//! - `transfer_money_drift_read_committed`: money created or destroyed by lost updates.
//! - `<mode>_p95_ms`, `<mode>_transfers_per_s`: latency (retries included) and committed
//!   transfers per second.
//! - `<mode>_retries_per_commit`, `<mode>_serialization_failure_pct` for the retrying modes.
//! - `deadlocks_detected` (40P01 under load, source row locked first),
//!   `deadlocks_with_lock_ordering` (40P01 under load, lower id locked first),
//!   `deadlock_script_opposite_order`, `deadlock_script_lower_id_first` (40P01 in the scripts).

pub mod anomalies;
pub mod deadlock;
pub mod interleave;
pub mod transfers;

use labkit::{LabCtx, Report, Table};

use anomalies::{Anomaly, Level, ScenarioRun, observed};
use deadlock::DeadlockRun;
use interleave::{Interleaving, Script, StepId};
use transfers::{Mode, ModeRun, Picker};

/// The `isolation-levels` lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct IsolationLevels;

/// Transfer workload size by scale.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub accounts: u64,
    pub transfers: u64,
    pub workers: usize,
    /// Zipf exponent for picking accounts: higher = hotter hot accounts.
    pub skew: f64,
}

impl Workload {
    pub fn for_scale(scale: labkit::Scale) -> Self {
        Self {
            accounts: scale.pick(200, 10_000, 1_000_000),
            transfers: scale.pick(200, 4_000, 100_000),
            workers: scale.pick(8, 16, 32),
            skew: 1.1,
        }
    }
}

#[labkit::async_trait]
impl labkit::Lab for IsolationLevels {
    fn id(&self) -> &'static str {
        "isolation-levels"
    }

    fn title(&self) -> &'static str {
        "Isolation levels: what each Postgres level prevents, by running the anomalies"
    }

    async fn run(&self, ctx: &LabCtx) -> anyhow::Result<Report> {
        let mut report = ctx.report(self.title());

        // 1. The anomalies, every one at every level, through the interleaving engine.
        let mut engine = Interleaving::connect(ctx.database_url(), 3).await?;
        let lowered = engine
            .on_every_session(deadlock::LOWER_DEADLOCK_TIMEOUT)
            .await
            .is_ok();
        let runs = anomalies::run_all(&ctx.pg, &mut engine).await?;
        let opposite = deadlock::run(&ctx.pg, &mut engine, &deadlock::opposite_order()).await?;
        let ordered = deadlock::run(&ctx.pg, &mut engine, &deadlock::lower_id_first()).await?;
        engine.close().await;

        // 2. The transfer workload, every mode on the same accounts and the same transfers.
        let w = Workload::for_scale(ctx.scale);
        transfers::setup(&ctx.pg, w.accounts, ctx.seed).await?;
        let (pool, deadlock_timeout) =
            transfers::pool(ctx.database_url(), w.workers as u32).await?;
        let picker = Picker::new(w.accounts, w.skew, ctx.seed);
        let mut modes = Vec::new();
        for mode in Mode::ALL {
            modes.push(transfers::run_mode(&pool, mode, picker, w.transfers, w.workers).await?);
        }
        pool.close().await;

        record_transfers(&mut report, &modes);
        record_deadlocks(&mut report, &modes, &opposite, &ordered);
        record_matrix(&mut report, &runs);
        report.table(transfer_table(&modes, &w));
        report.table(matrix_table(&runs));
        report.table(standard_table(&runs));
        report.table(deadlock_table(
            "Deadlock script: two transfers lock their source row first",
            &deadlock::opposite_order(),
            &opposite,
        ));
        report.table(deadlock_table(
            "Deadlock script fixed: both transfers lock the lower account id first",
            &deadlock::lower_id_first(),
            &ordered,
        ));
        for anomaly in Anomaly::ALL {
            report.table(transcript_table(anomaly, &runs));
        }
        notes(&mut report, &runs, &w, &deadlock_timeout, lowered);
        report.sentence(sentence(&runs, &modes));
        Ok(report)
    }
}

fn mode(modes: &[ModeRun], m: Mode) -> &ModeRun {
    modes.iter().find(|r| r.mode == m).expect("every mode ran")
}

fn happened_count(runs: &[ScenarioRun], level: Level) -> usize {
    runs.iter()
        .filter(|r| r.level == level && r.happened())
        .count()
}

fn record_transfers(report: &mut Report, modes: &[ModeRun]) {
    for r in modes {
        report.finding(
            &format!("transfer_invariant_violations_{}", r.mode.key()),
            &format!("Accounts off their ledger or negative: {}", r.mode.label()),
            r.books.violations as f64,
            "count",
        );
    }
    let rc = mode(modes, Mode::ReadCommitted);
    report.finding(
        "transfer_money_drift_read_committed",
        "Money created (+) or destroyed (−) by read committed without locks",
        rc.books.drift as f64,
        "count",
    );
    for m in [Mode::RepeatableRead, Mode::Serializable] {
        let r = mode(modes, m);
        report.finding(
            &format!("{}_retries_per_commit", m.key()),
            &format!("Retries per committed transfer: {}", m.label()),
            r.retries_per_commit(),
            "x",
        );
        report.finding(
            &format!("{}_serialization_failure_pct", m.key()),
            &format!("Transfer attempts failing with 40001: {}", m.label()),
            r.serialization_failure_pct(),
            "%",
        );
    }
    for m in [
        Mode::ReadCommitted,
        Mode::ForUpdate,
        Mode::RepeatableRead,
        Mode::Serializable,
    ] {
        let r = mode(modes, m);
        report.finding(
            &format!("{}_p95_ms", m.key()),
            &format!("Transfer p95 (retries included): {}", m.label()),
            r.load.p95_ms,
            "ms",
        );
        report.finding(
            &format!("{}_transfers_per_s", m.key()),
            &format!("Committed transfers per second: {}", m.label()),
            r.committed_per_s(),
            "transfers/s",
        );
    }
}

fn record_deadlocks(
    report: &mut Report,
    modes: &[ModeRun],
    opposite: &DeadlockRun,
    ordered: &DeadlockRun,
) {
    let unordered = mode(modes, Mode::ForUpdateUnordered);
    let ordered_load = mode(modes, Mode::ForUpdate);
    report.finding(
        "deadlocks_detected",
        &format!(
            "Deadlocks (40P01) in {} transfers locking the source row first",
            unordered.transfers
        ),
        unordered.counts.deadlocks() as f64,
        "count",
    );
    report.finding(
        "deadlocks_with_lock_ordering",
        &format!(
            "Deadlocks (40P01) in {} transfers locking the lower id first",
            ordered_load.transfers
        ),
        ordered_load.counts.deadlocks() as f64,
        "count",
    );
    report.finding(
        "deadlock_script_opposite_order",
        "Deadlocks in the script: opposite lock order",
        opposite.deadlocks as f64,
        "count",
    );
    report.finding(
        "deadlock_script_lower_id_first",
        "Deadlocks in the script: lower id first",
        ordered.deadlocks as f64,
        "count",
    );
}

fn record_matrix(report: &mut Report, runs: &[ScenarioRun]) {
    for level in Level::ALL {
        let (begun, failed) = runs
            .iter()
            .filter(|r| r.level == level)
            .map(ScenarioRun::serialization_failures)
            .fold((0, 0), |(b, f), (b2, f2)| (b + b2, f + f2));
        report.finding(
            &format!("serialization_failure_pct_{}", level.key()),
            &format!("Scenario transactions aborted with 40001 at {level} ({failed} of {begun})"),
            100.0 * failed as f64 / begun.max(1) as f64,
            "%",
        );
    }
    for r in runs {
        report.finding(
            &r.anomaly.finding_key(r.level),
            &format!("{} at {}", r.anomaly.name(), r.level),
            if r.happened() { 1.0 } else { 0.0 },
            "bool",
        );
    }
}

fn run_of(runs: &[ScenarioRun], anomaly: Anomaly, level: Level) -> &ScenarioRun {
    runs.iter()
        .find(|r| r.anomaly == anomaly && r.level == level)
        .expect("every anomaly ran at every level")
}

fn matrix_table(runs: &[ScenarioRun]) -> Table {
    let mut t = Table::new(
        "Anomaly × level, as measured in this run (HAPPENED = the judge saw the anomaly)",
        &[
            "anomaly",
            "key",
            "read uncommitted",
            "read committed",
            "repeatable read",
            "serializable",
        ],
    );
    for anomaly in Anomaly::ALL {
        let mut row = vec![anomaly.name().to_string(), format!("`{}_*`", anomaly.key())];
        row.extend(
            Level::ALL
                .iter()
                .map(|l| run_of(runs, anomaly, *l).verdict.short()),
        );
        t.row(row);
    }
    let mut happened = vec!["anomalies that happened".to_string(), String::new()];
    happened.extend(
        Level::ALL
            .iter()
            .map(|l| format!("{} of {}", happened_count(runs, *l), Anomaly::ALL.len())),
    );
    t.row(happened);
    let mut failures = vec!["transactions aborted with 40001".to_string(), String::new()];
    failures.extend(Level::ALL.iter().map(|l| {
        let (b, f) = runs
            .iter()
            .filter(|r| r.level == *l)
            .map(ScenarioRun::serialization_failures)
            .fold((0, 0), |(b, f), (b2, f2)| (b + b2, f + f2));
        format!("{f} of {b}")
    }));
    t.row(failures);
    t
}

/// SQL-92 defines its levels by three phenomena; this compares the levels at which the
/// standard *permits* each with the levels at which this run *saw* it. The "permits" column
/// is the standard's table (a reference); the measured column comes from the judges.
fn standard_table(runs: &[ScenarioRun]) -> Table {
    let mut t = Table::new(
        "SQL-92's table vs this run: where Postgres is stricter than the standard requires",
        &[
            "SQL-92 phenomenon",
            "measured by",
            "the standard permits it at",
            "this run saw it at",
            "stricter than the standard at",
        ],
    );
    let phenomena: [(&str, &[Anomaly], &[Level]); 3] = [
        (
            "P1 dirty read",
            &[Anomaly::G1a, Anomaly::G1b],
            &[Level::ReadUncommitted],
        ),
        (
            "P2 non-repeatable (fuzzy) read",
            &[Anomaly::GSingle],
            &[Level::ReadUncommitted, Level::ReadCommitted],
        ),
        (
            "P3 phantom",
            &[Anomaly::PmpRead],
            &[
                Level::ReadUncommitted,
                Level::ReadCommitted,
                Level::RepeatableRead,
            ],
        ),
    ];
    let names = |levels: &[Level]| {
        if levels.is_empty() {
            "none".to_string()
        } else {
            levels
                .iter()
                .map(|l| l.label())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for (phenomenon, measured_by, permitted) in phenomena {
        let seen: Vec<Level> = Level::ALL
            .into_iter()
            .filter(|l| measured_by.iter().any(|a| run_of(runs, *a, *l).happened()))
            .collect();
        let stricter: Vec<Level> = permitted
            .iter()
            .copied()
            .filter(|l| !seen.contains(l))
            .collect();
        t.row([
            phenomenon.to_string(),
            measured_by
                .iter()
                .map(|a| a.key())
                .collect::<Vec<_>>()
                .join(", "),
            names(permitted),
            names(&seen),
            names(&stricter),
        ]);
    }
    t
}

fn transfer_table(modes: &[ModeRun], w: &Workload) -> Table {
    let mut t = Table::new(
        format!(
            "Transfers: {} per mode over {} accounts (Zipf s = {}), {} concurrent clients",
            w.transfers, w.accounts, w.skew, w.workers
        ),
        &[
            "mode",
            "committed",
            "declined",
            "failed",
            "40001 (retried)",
            "40P01 (retried)",
            "accounts off ledger / negative",
            "money drift",
            "committed/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        ],
    );
    for r in modes {
        let c = &r.counts;
        t.row([
            r.mode.label().to_string(),
            c.committed.to_string(),
            c.declined.to_string(),
            c.failed().to_string(),
            format!("{} ({})", c.serialization_failures(), c.retried_40001),
            format!("{} ({})", c.deadlocks(), c.retried_40p01),
            format!("{} / {}", r.books.violations, r.books.negative),
            r.books.drift.to_string(),
            format!("{:.0}", r.committed_per_s()),
            format!("{:.2}", r.load.p50_ms),
            format!("{:.2}", r.load.p95_ms),
            format!("{:.2}", r.load.p99_ms),
        ]);
    }
    t
}

fn deadlock_table(title: &str, script: &Script, run: &DeadlockRun) -> Table {
    let mut t = Table::new(title, &["#", "tx", "statement", "observed"]);
    for (i, step) in script.steps().iter().enumerate() {
        t.row([
            (i + 1).to_string(),
            step.tx.to_string(),
            step.sql.to_string(),
            observed(run.transcript.record(StepId(i))),
        ]);
    }
    t
}

/// One table per anomaly: the script's steps down, the four levels across.
fn transcript_table(anomaly: Anomaly, runs: &[ScenarioRun]) -> Table {
    let mut t = Table::new(
        format!("Transcript: {} (`{}`)", anomaly.name(), anomaly.key()),
        &[
            "#",
            "tx",
            "statement",
            "read uncommitted",
            "read committed",
            "repeatable read",
            "serializable",
        ],
    );
    let script = anomaly.scenario(Level::ReadCommitted).script;
    for (i, step) in script.steps().iter().enumerate() {
        let sql = if step.sql.starts_with("begin isolation level") {
            "begin isolation level …"
        } else {
            step.sql
        };
        let mut row = vec![(i + 1).to_string(), step.tx.to_string(), sql.to_string()];
        row.extend(
            Level::ALL
                .iter()
                .map(|l| observed(run_of(runs, anomaly, *l).transcript.record(StepId(i)))),
        );
        t.row(row);
    }
    let mut verdict = vec![String::new(), String::new(), "verdict".to_string()];
    verdict.extend(
        Level::ALL
            .iter()
            .map(|l| run_of(runs, anomaly, *l).verdict.short()),
    );
    t.row(verdict);
    t
}

fn notes(
    report: &mut Report,
    runs: &[ScenarioRun],
    w: &Workload,
    deadlock_timeout: &str,
    lowered: bool,
) {
    let same_ru_rc = Anomaly::ALL.iter().all(|a| {
        run_of(runs, *a, Level::ReadUncommitted).happened()
            == run_of(runs, *a, Level::ReadCommitted).happened()
    });
    if same_ru_rc {
        report.note(
            "Read uncommitted behaved exactly like read committed in every scenario of this run: \
             Postgres accepts the level but never shows uncommitted data.",
        );
    }
    report.note(
        "Verdicts: HAPPENED = the scenario's judge saw the anomaly in the rows read, the commits \
         that succeeded and the final state; prevented: blocked = a transaction waited on a row \
         lock (pg_blocking_pids) and then behaved; aborted 40001/40P01 = Postgres refused a \
         statement or the commit; consistent read = no waits, no errors, the reads simply did \
         not see the other transaction.",
    );
    report.note(format!(
        "Transfers: every mode runs the same {} transfers (same seed) from {} clients; the \
         retrying modes retry at once on 40001/40P01, up to {} attempts. Latency includes \
         retries. Sessions ran with deadlock_timeout = {deadlock_timeout}{}.",
        w.transfers,
        w.workers,
        transfers::MAX_ATTEMPTS,
        if lowered {
            " (lowered per session so each deadlock costs 100 ms, not 1 s)"
        } else {
            " (could not be lowered: it needs superuser)"
        }
    ));
}

fn sentence(runs: &[ScenarioRun], modes: &[ModeRun]) -> String {
    let rc = mode(modes, Mode::ReadCommitted);
    let fu = mode(modes, Mode::ForUpdate);
    let ser = mode(modes, Mode::Serializable);
    format!(
        "Run as real interleavings, Postgres let {} of {} anomalies through at read committed, {} \
         at repeatable read and {} at serializable; under {} concurrent transfers, read committed \
         without locks left {} accounts off their ledger, while FOR UPDATE left {} and \
         serializable-with-retry {} — at {:.2} retries per committed transfer and a p95 of \
         {:.1} ms against {:.1} ms for FOR UPDATE.",
        happened_count(runs, Level::ReadCommitted),
        Anomaly::ALL.len(),
        happened_count(runs, Level::RepeatableRead),
        happened_count(runs, Level::Serializable),
        rc.transfers,
        rc.books.violations,
        fu.books.violations,
        ser.books.violations,
        ser.retries_per_commit(),
        ser.load.p95_ms,
        fu.load.p95_ms,
    )
}
