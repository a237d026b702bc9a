//! The anomalies, one interleaved script each, after Hermitage (ept/hermitage, `postgres.md`).
//!
//! Every scenario starts from the same two rows, `test = {1 → 10, 2 → 20}`, runs the same
//! script at each isolation level, and ends with a *judge*: a predicate over what the
//! transactions observed in that run (values read, whether both commits went through, the
//! final state). The matrix is built from those observations; nothing here says which level
//! "should" prevent what.
//!
//! | key | anomaly | what the judge looks for |
//! |---|---|---|
//! | `g0` | dirty write | the final state mixes T1's and T2's writes |
//! | `g1a` | aborted read | T2 read a value T1 then rolled back |
//! | `g1b` | intermediate read | T2 read a value T1 overwrote before committing |
//! | `g1c` | circular information flow | T1 and T2 each read the other's uncommitted write |
//! | `otv` | observed transaction vanishes | T3 saw a later writer, then an earlier one |
//! | `pmp_read` | predicate-many-preceders | a repeated predicate read returned a new row |
//! | `pmp_write` | PMP, write predicate | T2's DELETE missed a row its next read finds |
//! | `p4` | lost update | two read-modify-write increments committed, one is gone |
//! | `g_single` | read skew | T1 saw row 1 before T2 and row 2 after T2 |
//! | `g2_item` | write skew | both committed, each having read what the other overwrote |
//! | `g2` | anti-dependency cycle | both committed inserts the other's predicate read missed |

use std::fmt;

use sqlx::PgPool;

use crate::interleave::{
    InterleaveError, Interleaving, Outcome, Record, Row, Script, StepId, T1, T2, T3, Transcript,
};

/// The four levels SQL names. Postgres accepts all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::ReadUncommitted,
        Level::ReadCommitted,
        Level::RepeatableRead,
        Level::Serializable,
    ];

    /// Used in finding keys: `g2_item_read_committed`.
    pub fn key(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "read_uncommitted",
            Self::ReadCommitted => "read_committed",
            Self::RepeatableRead => "repeatable_read",
            Self::Serializable => "serializable",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "read uncommitted",
            Self::ReadCommitted => "read committed",
            Self::RepeatableRead => "repeatable read",
            Self::Serializable => "serializable",
        }
    }

    /// The script's first statement for a transaction at this level.
    pub fn begin(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "begin isolation level read uncommitted",
            Self::ReadCommitted => "begin isolation level read committed",
            Self::RepeatableRead => "begin isolation level repeatable read",
            Self::Serializable => "begin isolation level serializable",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The anomalies Hermitage tests, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anomaly {
    G0,
    G1a,
    G1b,
    G1c,
    Otv,
    PmpRead,
    PmpWrite,
    P4,
    GSingle,
    G2Item,
    G2,
}

impl Anomaly {
    pub const ALL: [Anomaly; 11] = [
        Anomaly::G0,
        Anomaly::G1a,
        Anomaly::G1b,
        Anomaly::G1c,
        Anomaly::Otv,
        Anomaly::PmpRead,
        Anomaly::PmpWrite,
        Anomaly::P4,
        Anomaly::GSingle,
        Anomaly::G2Item,
        Anomaly::G2,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::G0 => "g0",
            Self::G1a => "g1a",
            Self::G1b => "g1b",
            Self::G1c => "g1c",
            Self::Otv => "otv",
            Self::PmpRead => "pmp_read",
            Self::PmpWrite => "pmp_write",
            Self::P4 => "p4",
            Self::GSingle => "g_single",
            Self::G2Item => "g2_item",
            Self::G2 => "g2",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::G0 => "G0 dirty write",
            Self::G1a => "G1a aborted read",
            Self::G1b => "G1b intermediate read",
            Self::G1c => "G1c circular information flow",
            Self::Otv => "OTV observed transaction vanishes",
            Self::PmpRead => "PMP predicate-many-preceders (read)",
            Self::PmpWrite => "PMP predicate-many-preceders (write predicate)",
            Self::P4 => "P4 lost update",
            Self::GSingle => "G-single read skew",
            Self::G2Item => "G2-item write skew",
            Self::G2 => "G2 anti-dependency cycle (predicates)",
        }
    }

    /// The finding key for this anomaly at `level`: `<anomaly>_<level>`.
    pub fn finding_key(self, level: Level) -> String {
        format!("{}_{}", self.key(), level.key())
    }

    /// The script for this anomaly at `level`, and its judge.
    pub fn scenario(self, level: Level) -> Scenario {
        match self {
            Self::G0 => dirty_write(level),
            Self::G1a => aborted_read(level),
            Self::G1b => intermediate_read(level),
            Self::G1c => circular_information_flow(level),
            Self::Otv => observed_transaction_vanishes(level),
            Self::PmpRead => predicate_many_preceders_read(level),
            Self::PmpWrite => predicate_many_preceders_write(level),
            Self::P4 => lost_update(level),
            Self::GSingle => read_skew(level),
            Self::G2Item => write_skew(level),
            Self::G2 => anti_dependency_cycle(level),
        }
    }
}

type Judge = Box<dyn Fn(&Transcript) -> bool + Send + Sync>;

/// A script plus the predicate that says, from what the run observed, whether the anomaly
/// happened.
pub struct Scenario {
    pub script: Script,
    judge: Judge,
}

impl Scenario {
    fn new(script: Script, judge: impl Fn(&Transcript) -> bool + Send + Sync + 'static) -> Self {
        Self {
            script,
            judge: Box::new(judge),
        }
    }

    pub fn happened(&self, transcript: &Transcript) -> bool {
        (self.judge)(transcript)
    }
}

// ---------------------------------------------------------------------------------------
// The scripts. Step comments give Hermitage's read-committed observation for orientation;
// the judges decide from what this run actually returned.
// ---------------------------------------------------------------------------------------

/// G0: two transactions write the same two rows; a dirty write lets the final state mix them.
fn dirty_write(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "update test set value = 11 where id = 1 returning *");
    s.step(T2, "update test set value = 12 where id = 1 returning *"); // waits for T1
    s.step(T1, "update test set value = 21 where id = 2 returning *");
    s.step(T1, "commit");
    s.step(T2, "update test set value = 22 where id = 2 returning *");
    s.step(T2, "commit");
    let fin = s.step(T3, "select * from test order by id");
    Scenario::new(s, move |t| {
        let fin = t.rows(fin).unwrap_or_default();
        fin == [(1, 12), (2, 21)] || fin == [(1, 11), (2, 22)]
    })
}

/// G1a: T2 reads while T1 has an uncommitted write that T1 then rolls back.
fn aborted_read(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "update test set value = 101 where id = 1 returning *");
    let r1 = s.step(T2, "select * from test order by id");
    s.step(T1, "rollback");
    let r2 = s.step(T2, "select * from test order by id");
    s.step(T2, "commit");
    Scenario::new(s, move |t| saw(t, &[r1, r2], (1, 101)))
}

/// G1b: T2 reads while T1's write is an intermediate value T1 later overwrites.
fn intermediate_read(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "update test set value = 101 where id = 1 returning *");
    let r1 = s.step(T2, "select * from test order by id");
    s.step(T1, "update test set value = 11 where id = 1 returning *");
    s.step(T1, "commit");
    let r2 = s.step(T2, "select * from test order by id");
    s.step(T2, "commit");
    Scenario::new(s, move |t| saw(t, &[r1, r2], (1, 101)))
}

/// G1c: each transaction writes one row and reads the other's.
fn circular_information_flow(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "update test set value = 11 where id = 1 returning *");
    s.step(T2, "update test set value = 22 where id = 2 returning *");
    let r1 = s.step(T1, "select * from test where id = 2"); // RC: still 2 → 20
    let r2 = s.step(T2, "select * from test where id = 1"); // RC: still 1 → 10
    s.step(T1, "commit");
    s.step(T2, "commit");
    Scenario::new(s, move |t| saw(t, &[r1], (2, 22)) && saw(t, &[r2], (1, 11)))
}

/// OTV: T1 writes both rows, T2 overwrites both after T1 commits, T3 reads along the way.
/// T3 must never see a writer and then, later, an earlier one.
fn observed_transaction_vanishes(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T3, level.begin());
    s.step(T1, "update test set value = 11 where id = 1 returning *");
    s.step(T1, "update test set value = 19 where id = 2 returning *");
    s.step(T2, "update test set value = 12 where id = 1 returning *"); // waits for T1
    s.step(T1, "commit");
    let a = s.step(T3, "select * from test where id = 1");
    s.step(T2, "update test set value = 18 where id = 2 returning *");
    let b = s.step(T3, "select * from test where id = 2");
    s.step(T2, "commit");
    let c = s.step(T3, "select * from test where id = 2");
    let d = s.step(T3, "select * from test where id = 1");
    s.step(T3, "commit");
    Scenario::new(s, move |t| {
        // Which transaction wrote each value T3 saw: 0 = the initial rows, 1 = T1, 2 = T2.
        let writer = |(_, v): Row| match v {
            11 | 19 => 1,
            12 | 18 => 2,
            _ => 0,
        };
        let seen: Vec<i32> = [a, b, c, d]
            .iter()
            .filter_map(|id| t.rows(*id))
            .flat_map(|rows| rows.iter().copied().map(writer))
            .collect();
        seen.windows(2).any(|w| w[1] < w[0])
    })
}

/// PMP (read): T1 repeats a predicate read after T2 inserted a matching row and committed.
fn predicate_many_preceders_read(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "select * from test where value = 30"); // nothing
    s.step(
        T2,
        "insert into test (id, value) values (3, 30) returning *",
    );
    s.step(T2, "commit");
    let again = s.step(T1, "select * from test where value % 3 = 0");
    s.step(T1, "commit");
    Scenario::new(s, move |t| saw(t, &[again], (3, 30)))
}

/// PMP (write predicate): T2's DELETE waits for T1's UPDATE of every row, then misses a row
/// that matches its predicate once T1 has committed.
fn predicate_many_preceders_write(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "update test set value = value + 10 returning *");
    let delete = s.step(T2, "delete from test where value = 20 returning *"); // waits for T1
    s.step(T1, "commit");
    let read = s.step(T2, "select * from test where value = 20");
    s.step(T2, "commit");
    Scenario::new(s, move |t| {
        t.succeeded(delete) && t.rows(read).is_some_and(|rows| !rows.is_empty())
    })
}

/// P4: two read-modify-write increments of the same row (10 → 11 each); both commit.
fn lost_update(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    s.step(T1, "select * from test where id = 1");
    s.step(T2, "select * from test where id = 1");
    s.named(
        "t1 update",
        T1,
        "update test set value = 11 where id = 1 returning *",
    );
    s.named(
        "t2 update",
        T2,
        "update test set value = 11 where id = 1 returning *",
    ); // waits for T1
    let c1 = s.step(T1, "commit");
    let c2 = s.step(T2, "commit");
    let fin = s.step(T3, "select * from test where id = 1");
    Scenario::new(s, move |t| {
        // Two increments committed, the row moved by one: an update was lost.
        t.succeeded(c1) && t.succeeded(c2) && t.rows(fin) == Some(&[(1, 11)][..])
    })
}

/// G-single: T1 reads row 1; T2 changes both rows (keeping the total at 30) and commits;
/// T1 reads row 2.
fn read_skew(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    let x = s.step(T1, "select * from test where id = 1"); // 1 → 10
    s.step(T2, "select * from test where id = 1");
    s.step(T2, "select * from test where id = 2");
    s.step(T2, "update test set value = 12 where id = 1 returning *");
    s.step(T2, "update test set value = 18 where id = 2 returning *");
    s.step(T2, "commit");
    let y = s.step(T1, "select * from test where id = 2");
    s.step(T1, "commit");
    // T1 saw row 1 before T2 and row 2 after it: 10 + 18, a total no committed state had.
    Scenario::new(s, move |t| saw(t, &[x], (1, 10)) && saw(t, &[y], (2, 18)))
}

/// G2-item: each transaction reads both rows and updates a different one.
fn write_skew(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    let r1 = s.step(T1, "select * from test where id in (1, 2) order by id");
    let r2 = s.step(T2, "select * from test where id in (1, 2) order by id");
    s.step(T1, "update test set value = 11 where id = 1 returning *");
    s.step(T2, "update test set value = 21 where id = 2 returning *");
    let c1 = s.step(T1, "commit");
    let c2 = s.step(T2, "commit");
    Scenario::new(s, move |t| {
        // Both committed, and each read the old version of the row the other changed:
        // T1 →rw T2 →rw T1, a cycle no serial order has.
        t.succeeded(c1) && t.succeeded(c2) && saw(t, &[r1], (2, 20)) && saw(t, &[r2], (1, 10))
    })
}

/// G2: each transaction checks a predicate, finds nothing, and inserts a row matching it.
fn anti_dependency_cycle(level: Level) -> Scenario {
    let mut s = Script::new();
    s.step(T1, level.begin());
    s.step(T2, level.begin());
    let r1 = s.step(T1, "select * from test where value % 3 = 0");
    let r2 = s.step(T2, "select * from test where value % 3 = 0");
    s.step(
        T1,
        "insert into test (id, value) values (3, 30) returning *",
    );
    s.step(
        T2,
        "insert into test (id, value) values (4, 42) returning *",
    );
    let c1 = s.step(T1, "commit");
    let c2 = s.step(T2, "commit");
    s.step(T3, "select * from test where value % 3 = 0");
    Scenario::new(s, move |t| {
        let empty = |id| t.rows(id).is_some_and(|r: &[Row]| r.is_empty());
        t.succeeded(c1) && t.succeeded(c2) && empty(r1) && empty(r2)
    })
}

/// Did any of `steps` return `row`?
fn saw(t: &Transcript, steps: &[StepId], row: Row) -> bool {
    steps
        .iter()
        .any(|id| t.rows(*id).is_some_and(|rows| rows.contains(&row)))
}

// ---------------------------------------------------------------------------------------
// Running them, and what the run says.
// ---------------------------------------------------------------------------------------

/// How a run ended, from the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Happened,
    /// Postgres aborted a transaction with this SQLSTATE (`40001`, `40P01`).
    Aborted {
        sqlstate: String,
    },
    /// A transaction waited on a lock and then did the right thing (re-read, or wrote after).
    Blocked,
    /// No waits, no errors: each transaction read a consistent snapshot or only committed
    /// data.
    ConsistentRead,
}

impl Verdict {
    pub fn prevented(&self) -> bool {
        !matches!(self, Self::Happened)
    }

    /// Short cell text for the matrix.
    pub fn short(&self) -> String {
        match self {
            Self::Happened => "HAPPENED".into(),
            Self::Aborted { sqlstate } => format!("prevented: aborted {sqlstate}"),
            Self::Blocked => "prevented: blocked".into(),
            Self::ConsistentRead => "prevented: consistent read".into(),
        }
    }
}

/// One scenario at one level.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    pub anomaly: Anomaly,
    pub level: Level,
    pub transcript: Transcript,
    pub verdict: Verdict,
}

impl ScenarioRun {
    pub fn happened(&self) -> bool {
        self.verdict == Verdict::Happened
    }

    /// Transactions the script began, and how many of them Postgres aborted with 40001.
    pub fn serialization_failures(&self) -> (usize, usize) {
        (
            self.transcript.transactions_begun(),
            self.transcript.transactions_failed_with("40001"),
        )
    }
}

fn verdict(happened: bool, t: &Transcript) -> Verdict {
    if happened {
        return Verdict::Happened;
    }
    if let Some((_, _, sqlstate)) = t.failures().next() {
        return Verdict::Aborted {
            sqlstate: sqlstate.to_string(),
        };
    }
    if t.records.iter().any(Record::waited) {
        return Verdict::Blocked;
    }
    Verdict::ConsistentRead
}

/// Recreate Hermitage's table: `test = {1 → 10, 2 → 20}`.
pub async fn reset_table(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS test;
         CREATE TABLE test (id int PRIMARY KEY, value int);
         INSERT INTO test (id, value) VALUES (1, 10), (2, 20);",
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("resetting the test table failed: {0}")]
    Reset(#[from] sqlx::Error),
    #[error(transparent)]
    Interleave(#[from] InterleaveError),
}

/// Run one anomaly at one level on a fresh table.
pub async fn run_one(
    pool: &PgPool,
    engine: &mut Interleaving,
    anomaly: Anomaly,
    level: Level,
) -> Result<ScenarioRun, ScenarioError> {
    reset_table(pool).await?;
    let scenario = anomaly.scenario(level);
    let transcript = engine.run(&scenario.script).await?;
    let happened = scenario.happened(&transcript);
    Ok(ScenarioRun {
        anomaly,
        level,
        verdict: verdict(happened, &transcript),
        transcript,
    })
}

/// Run every anomaly at every level, one after another (they share the table).
pub async fn run_all(
    pool: &PgPool,
    engine: &mut Interleaving,
) -> Result<Vec<ScenarioRun>, ScenarioError> {
    let mut runs = Vec::with_capacity(Anomaly::ALL.len() * Level::ALL.len());
    for anomaly in Anomaly::ALL {
        for level in Level::ALL {
            runs.push(run_one(pool, engine, anomaly, level).await?);
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------
// Transcript text, Hermitage style.
// ---------------------------------------------------------------------------------------

fn rows_text(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    rows.iter()
        .map(|(id, v)| format!("{id}→{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one step observed, as a transcript cell: `1→10, 2→20`, `waits for T1 … then (after
/// #5) 1→12`, `ERROR 40001`, `skipped (aborted)`.
pub fn observed(r: &Record) -> String {
    let verb = r
        .sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let what = match &r.outcome {
        Outcome::Rows(rows) => match verb.as_str() {
            "select" => rows_text(rows),
            "update" | "insert" | "delete" => format!("{verb}d {}", rows_text(rows)),
            "commit" => "committed".into(),
            "rollback" | "abort" => "rolled back".into(),
            _ => "ok".into(),
        },
        Outcome::Failed { sqlstate, message } => format!("ERROR {sqlstate}: {message}"),
        Outcome::Skipped => "not sent (transaction already failed)".into(),
        Outcome::RolledBack => "rolled back (transaction had failed)".into(),
    };
    if r.waited() {
        let on: Vec<String> = r.waited_for.iter().map(|t| t.to_string()).collect();
        let after = r
            .finished_after
            .map(|s| format!(" after #{}", s.0 + 1))
            .unwrap_or_default();
        format!(
            "BLOCKED (waits for {}) … then{after}: {what}",
            on.join(", ")
        )
    } else {
        what
    }
}
