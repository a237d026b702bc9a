//! Two transfers between the same two accounts in opposite directions, as scripts.
//!
//! Locking the source row first, T1 (1 → 2) holds row 1 and wants row 2 while T2 (2 → 1)
//! holds row 2 and wants row 1. Neither can go on; after `deadlock_timeout` Postgres's
//! deadlock detector finds the cycle and aborts one of them with SQLSTATE 40P01. Locking the
//! lower id first, T2 asks for row 1 first and simply waits for T1: no cycle can form.

use sqlx::PgPool;

use crate::anomalies::{ScenarioError, reset_table};
use crate::interleave::{Interleaving, Script, T1, T2, T3, Transcript};

/// Lowers the deadlock detector's wait from the default 1 s so each deadlock costs 100 ms of
/// run time. `deadlock_timeout` is superuser-only: on a managed server this fails with 42501
/// and the lab runs with the server's value.
pub const LOWER_DEADLOCK_TIMEOUT: &str = "SET deadlock_timeout = '100ms'";

/// Accounts 1 and 2 hold 10 and 20; T1 moves 5 from 1 to 2, T2 moves 5 from 2 to 1, each
/// locking its source row first (an UPDATE takes the row lock).
pub fn opposite_order() -> Script {
    let mut s = Script::new();
    s.step(T1, "begin isolation level read committed");
    s.step(T2, "begin isolation level read committed");
    s.step(
        T1,
        "update test set value = value - 5 where id = 1 returning *",
    ); // T1 locks 1
    s.step(
        T2,
        "update test set value = value - 5 where id = 2 returning *",
    ); // T2 locks 2
    s.named(
        "t1 credit",
        T1,
        "update test set value = value + 5 where id = 2 returning *",
    ); // waits for T2
    s.named(
        "t2 credit",
        T2,
        "update test set value = value + 5 where id = 1 returning *",
    ); // cycle: 40P01
    s.step(T1, "commit");
    s.step(T2, "commit");
    s.named("final", T3, "select * from test order by id");
    s
}

/// The same two transfers, each locking the lower account id first.
pub fn lower_id_first() -> Script {
    let mut s = Script::new();
    s.step(T1, "begin isolation level read committed");
    s.step(T2, "begin isolation level read committed");
    s.step(T1, "select * from test where id = 1 for update"); // T1 (1 → 2) locks 1
    s.named(
        "t2 locks row 1",
        T2,
        "select * from test where id = 1 for update",
    ); // T2 (2 → 1) also wants 1: waits
    s.step(T1, "select * from test where id = 2 for update");
    s.step(
        T1,
        "update test set value = value - 5 where id = 1 returning *",
    );
    s.step(
        T1,
        "update test set value = value + 5 where id = 2 returning *",
    );
    s.step(T1, "commit"); // T2 gets row 1
    s.step(T2, "select * from test where id = 2 for update");
    s.step(
        T2,
        "update test set value = value - 5 where id = 2 returning *",
    );
    s.step(
        T2,
        "update test set value = value + 5 where id = 1 returning *",
    );
    s.step(T2, "commit");
    s.named("final", T3, "select * from test order by id");
    s
}

/// One deadlock script's result.
#[derive(Debug, Clone)]
pub struct DeadlockRun {
    pub transcript: Transcript,
    /// Steps Postgres aborted with 40P01.
    pub deadlocks: usize,
    /// Transactions that committed.
    pub committed: usize,
}

pub async fn run(
    pool: &PgPool,
    engine: &mut Interleaving,
    script: &Script,
) -> Result<DeadlockRun, ScenarioError> {
    reset_table(pool).await?;
    let transcript = engine.run(script).await?;
    let deadlocks = transcript
        .failures()
        .filter(|(_, _, s)| *s == "40P01")
        .count();
    let committed = transcript
        .records
        .iter()
        .enumerate()
        .filter(|(i, r)| r.sql == "commit" && transcript.succeeded(crate::interleave::StepId(*i)))
        .count();
    Ok(DeadlockRun {
        transcript,
        deadlocks,
        committed,
    })
}
