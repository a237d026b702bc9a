//! The run's results as findings, tables (the matrix, SQL-92 against the run, the transfer
//! table, every transcript), notes and the sentence.

use labkit::{Better, LabCtx, Report, Table};

use crate::Workload;
use crate::anomalies::{Anomaly, Level, ScenarioRun, observed};
use crate::deadlock::{self, DeadlockRun};
use crate::interleave::{Script, StepId};
use crate::transfers::{self, Mode, ModeRun};

/// Every key the report carries (the JSON contract; see the README's list).
pub const FINDING_KEYS: &[&str] = &[
    // the matrix: 1 = the anomaly happened in this run, 0 = prevented
    "g0_read_uncommitted",
    "g0_read_committed",
    "g0_repeatable_read",
    "g0_serializable",
    "g1a_read_uncommitted",
    "g1a_read_committed",
    "g1a_repeatable_read",
    "g1a_serializable",
    "g1b_read_uncommitted",
    "g1b_read_committed",
    "g1b_repeatable_read",
    "g1b_serializable",
    "g1c_read_uncommitted",
    "g1c_read_committed",
    "g1c_repeatable_read",
    "g1c_serializable",
    "otv_read_uncommitted",
    "otv_read_committed",
    "otv_repeatable_read",
    "otv_serializable",
    "pmp_read_read_uncommitted",
    "pmp_read_read_committed",
    "pmp_read_repeatable_read",
    "pmp_read_serializable",
    "pmp_write_read_uncommitted",
    "pmp_write_read_committed",
    "pmp_write_repeatable_read",
    "pmp_write_serializable",
    "p4_read_uncommitted",
    "p4_read_committed",
    "p4_repeatable_read",
    "p4_serializable",
    "g_single_read_uncommitted",
    "g_single_read_committed",
    "g_single_repeatable_read",
    "g_single_serializable",
    "g2_item_read_uncommitted",
    "g2_item_read_committed",
    "g2_item_repeatable_read",
    "g2_item_serializable",
    "g2_read_uncommitted",
    "g2_read_committed",
    "g2_repeatable_read",
    "g2_serializable",
    // how many of the eleven happened at each level (Hermitage: 6, 2, 0 at RC, RR, SER)
    "anomalies_happened_read_uncommitted",
    "anomalies_happened_read_committed",
    "anomalies_happened_repeatable_read",
    "anomalies_happened_serializable",
    "serialization_failure_pct_read_uncommitted",
    "serialization_failure_pct_read_committed",
    "serialization_failure_pct_repeatable_read",
    "serialization_failure_pct_serializable",
    // the transfer workload
    "transfer_invariant_violations_read_committed",
    "transfer_invariant_violations_for_update_unordered",
    "transfer_invariant_violations_for_update",
    "transfer_invariant_violations_repeatable_read",
    "transfer_invariant_violations_serializable",
    "transfer_money_drift_read_committed",
    "repeatable_read_retries_per_commit",
    "repeatable_read_serialization_failure_pct",
    "serializable_retries_per_commit",
    "serializable_serialization_failure_pct",
    "read_committed_p95_ms",
    "read_committed_transfers_per_s",
    "for_update_unordered_p95_ms",
    "for_update_unordered_transfers_per_s",
    "for_update_p95_ms",
    "for_update_transfers_per_s",
    "repeatable_read_p95_ms",
    "repeatable_read_transfers_per_s",
    "serializable_p95_ms",
    "serializable_transfers_per_s",
    // deadlocks
    "deadlocks_detected",
    "deadlocks_with_lock_ordering",
    "deadlock_script_opposite_order",
    "deadlock_script_lower_id_first",
];

/// What the run's steps measured.
#[derive(Debug)]
pub struct Measured {
    pub runs: Vec<ScenarioRun>,
    pub opposite: DeadlockRun,
    pub ordered: DeadlockRun,
    pub workload: Workload,
    pub modes: Vec<ModeRun>,
    /// `deadlock_timeout` as the transfer sessions saw it.
    pub deadlock_timeout: String,
    /// Whether the scripts' sessions could lower `deadlock_timeout` (superuser only).
    pub lowered: bool,
}

pub fn build(ctx: &LabCtx, title: &str, m: &Measured) -> Report {
    let mut report = ctx.report(title);
    record_transfers(&mut report, &m.modes);
    record_deadlocks(&mut report, &m.modes, &m.opposite, &m.ordered);
    record_matrix(&mut report, &m.runs);
    report.table(transfer_table(&m.modes, &m.workload));
    report.table(matrix_table(&m.runs));
    report.table(standard_table(&m.runs));
    report.table(deadlock_table(
        "Deadlock script: two transfers lock their source row first",
        &deadlock::opposite_order(),
        &m.opposite,
    ));
    report.table(deadlock_table(
        "Deadlock script fixed: both transfers lock the lower account id first",
        &deadlock::lower_id_first(),
        &m.ordered,
    ));
    for anomaly in Anomaly::ALL {
        report.table(transcript_table(anomaly, &m.runs));
    }
    notes(&mut report, m);
    report.sentence(sentence(&m.runs, &m.modes));
    report
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
        let key = format!("transfer_invariant_violations_{}", r.mode.key());
        report
            .finding(
                &key,
                &format!("Accounts off their ledger or negative: {}", r.mode.label()),
                r.books.violations as f64,
                "count",
            )
            .better(&key, Better::Lower);
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
        let (retries, failures) = (
            format!("{}_retries_per_commit", m.key()),
            format!("{}_serialization_failure_pct", m.key()),
        );
        report
            .finding(
                &retries,
                &format!("Retries per committed transfer: {}", m.label()),
                r.retries_per_commit(),
                "x",
            )
            .better(&retries, Better::Lower);
        report
            .finding(
                &failures,
                &format!("Transfer attempts failing with 40001: {}", m.label()),
                r.serialization_failure_pct(),
                "%",
            )
            .better(&failures, Better::Lower);
    }
    for m in Mode::ALL {
        let r = mode(modes, m);
        report.p95(
            &format!("{}_p95_ms", m.key()),
            &format!("Transfer p95 (retries included): {}", m.label()),
            &r.load,
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
    report
        .finding(
            "deadlocks_detected",
            &format!(
                "Deadlocks (40P01) in {} transfers locking the source row first",
                unordered.transfers
            ),
            unordered.counts.deadlocks() as f64,
            "count",
        )
        .better("deadlocks_detected", Better::Lower);
    report
        .finding(
            "deadlocks_with_lock_ordering",
            &format!(
                "Deadlocks (40P01) in {} transfers locking the lower id first",
                ordered_load.transfers
            ),
            ordered_load.counts.deadlocks() as f64,
            "count",
        )
        .better("deadlocks_with_lock_ordering", Better::Lower);
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
        report.finding(
            &format!("anomalies_happened_{}", level.key()),
            &format!(
                "Anomalies (of {}) that happened at {level}",
                Anomaly::ALL.len()
            ),
            happened_count(runs, level) as f64,
            "count",
        );
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
        report.flag(
            &r.anomaly.finding_key(r.level),
            &format!("{} at {}", r.anomaly.name(), r.level),
            r.happened(),
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

fn notes(report: &mut Report, m: &Measured) {
    let (runs, w) = (&m.runs, &m.workload);
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
        "Transfers: every mode runs the same {} transfers (same seed) from {} clients \
         (--clients sets them; the anomaly and deadlock scripts always run their two or three \
         scripted transactions); the retrying modes retry at once on 40001/40P01, up to {} \
         attempts. Latency includes retries. Sessions ran with deadlock_timeout = {}{}.",
        w.transfers,
        w.workers,
        transfers::MAX_ATTEMPTS,
        m.deadlock_timeout,
        if m.lowered {
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
