//! The interleaving engine: run a script of steps from two or three transactions in a fixed
//! order, each transaction on its own connection, and record what every step observed.
//!
//! A script is what Hermitage writes by hand in two psql windows:
//!
//! ```text
//! T1: begin isolation level read committed
//! T2: begin isolation level read committed
//! T1: update test set value = 11 where id = 1
//! T2: update test set value = 12 where id = 1     -- waits for T1
//! T1: commit                                      -- T2's update now finishes
//! ```
//!
//! The hard part is the step that waits on a lock. After sending a step the engine polls
//! `pg_blocking_pids(pid)` on a separate monitor connection until the step has either
//! finished or Postgres reports it waiting on a lock another backend holds. Nothing is
//! decided by a timeout: "it did not answer within 50 ms, so it must be blocked" would be
//! wrong on a busy laptop and slow on an idle one. A waiting step stays in flight while the
//! script moves on to the next transaction's step; after every step the engine looks at the
//! waiting ones again and records which step let them finish.
//!
//! Each transaction's connection is driven by its own task, so a statement that waits for
//! minutes does not stop the script from sending the COMMIT that releases it.

use std::fmt;
use std::time::{Duration, Instant};

use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A row of the scripts' table `test (id int, value int)`, as Hermitage uses it.
pub type Row = (i32, i32);

/// A transaction in a script: `T1`, `T2`, `T3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tx(pub usize);

pub const T1: Tx = Tx(0);
pub const T2: Tx = Tx(1);
pub const T3: Tx = Tx(2);

impl fmt::Display for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0 + 1)
    }
}

/// A step's position in its script, returned by [`Script::step`] so verdicts can name the
/// steps they look at (tests find named steps with [`Transcript::step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId(pub usize);

/// One line of a script: which transaction sends which statement.
#[derive(Debug, Clone)]
pub struct Step {
    pub tx: Tx,
    pub sql: &'static str,
    /// A name tests and tables can refer to (`"t2 update"`), for the steps that matter.
    pub name: Option<&'static str>,
}

/// Steps in the order they are sent.
#[derive(Debug, Clone, Default)]
pub struct Script {
    steps: Vec<Step>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `tx: sql`. Outside `begin` ... `commit` a step runs in autocommit, which is how
    /// scripts read the final state.
    pub fn step(&mut self, tx: Tx, sql: &'static str) -> StepId {
        self.steps.push(Step {
            tx,
            sql,
            name: None,
        });
        StepId(self.steps.len() - 1)
    }

    /// [`step`](Self::step), with a name the transcript keeps (`"t2 update"`).
    pub fn named(&mut self, name: &'static str, tx: Tx, sql: &'static str) -> StepId {
        let id = self.step(tx, sql);
        self.steps[id.0].name = Some(name);
        id
    }

    /// The step called `name`, if there is one.
    pub fn id(&self, name: &str) -> Option<StepId> {
        self.steps
            .iter()
            .position(|s| s.name == Some(name))
            .map(StepId)
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How many sessions the script needs.
    pub fn transactions(&self) -> usize {
        self.steps.iter().map(|s| s.tx.0 + 1).max().unwrap_or(0)
    }
}

fn first_word(sql: &str) -> String {
    sql.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_begin(sql: &str) -> bool {
    matches!(first_word(sql).as_str(), "begin" | "start")
}

fn is_end(sql: &str) -> bool {
    matches!(first_word(sql).as_str(), "commit" | "rollback" | "abort")
}

/// What a step observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The statement ran; the rows it returned (a SELECT, or a write's RETURNING).
    Rows(Vec<Row>),
    /// Postgres refused it, with this SQLSTATE (`40001` serialization failure, `40P01`
    /// deadlock, ...).
    Failed { sqlstate: String, message: String },
    /// Not sent: an earlier statement of this transaction failed, so Postgres would only
    /// answer `25P02 current transaction is aborted`.
    Skipped,
    /// The transaction had already failed, so its COMMIT was sent as a ROLLBACK.
    RolledBack,
}

/// One step of a finished script.
#[derive(Debug, Clone)]
pub struct Record {
    pub tx: Tx,
    pub sql: &'static str,
    /// The step's name in the script, if it has one.
    pub name: Option<&'static str>,
    pub outcome: Outcome,
    /// Transactions this step waited for on a lock (empty if it never waited).
    pub waited_for: Vec<Tx>,
    /// For a step that waited: the latest step sent when it was seen finished — usually
    /// the COMMIT or ROLLBACK that released its lock.
    pub finished_after: Option<StepId>,
}

impl Record {
    pub fn waited(&self) -> bool {
        !self.waited_for.is_empty()
    }
}

/// Every step of a script, in script order, with what it observed.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub records: Vec<Record>,
}

impl Transcript {
    pub fn record(&self, id: StepId) -> &Record {
        &self.records[id.0]
    }

    /// The step the script named `name` (see [`Script::named`]).
    pub fn step(&self, name: &str) -> Option<StepId> {
        self.records
            .iter()
            .position(|r| r.name == Some(name))
            .map(StepId)
    }

    /// The rows a step returned, or `None` if it failed or was skipped.
    pub fn rows(&self, id: StepId) -> Option<&[Row]> {
        match &self.records[id.0].outcome {
            Outcome::Rows(r) => Some(r),
            _ => None,
        }
    }

    /// The step ran without an error (a COMMIT that succeeded, an UPDATE that went through).
    pub fn succeeded(&self, id: StepId) -> bool {
        matches!(self.records[id.0].outcome, Outcome::Rows(_))
    }

    pub fn sqlstate(&self, id: StepId) -> Option<&str> {
        match &self.records[id.0].outcome {
            Outcome::Failed { sqlstate, .. } => Some(sqlstate),
            _ => None,
        }
    }

    /// `(step, transaction, SQLSTATE)` of every failed step, in script order.
    pub fn failures(&self) -> impl Iterator<Item = (StepId, Tx, &str)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.outcome {
                Outcome::Failed { sqlstate, .. } => Some((StepId(i), r.tx, sqlstate.as_str())),
                _ => None,
            })
    }

    /// How many transactions failed with `sqlstate`.
    pub fn transactions_failed_with(&self, sqlstate: &str) -> usize {
        let mut txs: Vec<Tx> = self
            .failures()
            .filter(|(_, _, s)| *s == sqlstate)
            .map(|(_, t, _)| t)
            .collect();
        txs.sort();
        txs.dedup();
        txs.len()
    }

    /// How many transactions the script began.
    pub fn transactions_begun(&self) -> usize {
        self.records.iter().filter(|r| is_begin(r.sql)).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InterleaveError {
    #[error("connecting a session failed: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("the lock monitor query failed: {0}")]
    Monitor(#[source] sqlx::Error),
    #[error("{tx}'s connection failed (not a statement error): {source}")]
    Session {
        tx: Tx,
        #[source]
        source: sqlx::Error,
    },
    #[error("{tx}'s session task ended unexpectedly")]
    SessionGone { tx: Tx },
    #[error("the script needs {needed} sessions but the engine has {have}")]
    TooFewSessions { needed: usize, have: usize },
    #[error(
        "{tx}: `{sql}` neither finished nor released after {waited:?}; the script cannot go on"
    )]
    Stuck {
        tx: Tx,
        sql: &'static str,
        waited: Duration,
    },
}

/// A safety valve, not a detector: a script whose steps neither finish nor wait on a lock
/// for this long is broken (a deadlock resolves after `deadlock_timeout`, 1 s by default).
const STUCK_AFTER: Duration = Duration::from_secs(30);

type StepResult = Result<Vec<Row>, sqlx::Error>;

struct Request {
    sql: &'static str,
    reply: oneshot::Sender<StepResult>,
}

struct Session {
    pid: i32,
    requests: mpsc::UnboundedSender<Request>,
    task: JoinHandle<()>,
}

/// A step sent but not finished: it waits on a lock.
struct Waiting {
    step: StepId,
    reply: oneshot::Receiver<StepResult>,
    blockers: Vec<i32>,
}

enum Settled {
    Done(StepResult),
    Waiting(oneshot::Receiver<StepResult>, Vec<i32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    Idle,
    InTransaction,
    /// An error aborted the transaction; only ROLLBACK is accepted now.
    Failed,
}

/// N sessions (one per transaction) plus a monitor connection that watches for lock waits.
pub struct Interleaving {
    sessions: Vec<Session>,
    monitor: PgConnection,
}

impl Interleaving {
    /// Open `transactions` sessions and the monitor on `database_url`.
    pub async fn connect(database_url: &str, transactions: usize) -> Result<Self, InterleaveError> {
        let mut monitor = PgConnection::connect(database_url)
            .await
            .map_err(InterleaveError::Connect)?;
        let mut sessions = Vec::with_capacity(transactions);
        for _ in 0..transactions {
            let mut conn = PgConnection::connect(database_url)
                .await
                .map_err(InterleaveError::Connect)?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .map_err(InterleaveError::Connect)?;
            let (requests, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(serve(conn, rx));
            sessions.push(Session {
                pid,
                requests,
                task,
            });
        }
        // Warm the monitor query so the first poll is not also a statement prepare.
        sqlx::query_scalar::<_, Vec<i32>>("SELECT pg_blocking_pids($1)")
            .bind(0_i32)
            .fetch_one(&mut monitor)
            .await
            .map_err(InterleaveError::Monitor)?;
        Ok(Self { sessions, monitor })
    }

    /// The backend pid of `tx`'s session.
    pub fn pid(&self, tx: Tx) -> i32 {
        self.sessions[tx.0].pid
    }

    /// Run `sql` once on every session (e.g. `SET deadlock_timeout = '100ms'`). Returns the
    /// first statement error, if any; the caller decides whether that matters.
    pub async fn on_every_session(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        let mut first_error = None;
        for t in 0..self.sessions.len() {
            let reply = self.send(Tx(t), sql)?;
            let result = reply.await.map_err(|_| sqlx::Error::PoolClosed)?;
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Send the script's steps in order and return what each observed. Every session is left
    /// idle (outside a transaction) afterwards, so the engine can run the next script.
    pub async fn run(&mut self, script: &Script) -> Result<Transcript, InterleaveError> {
        let needed = script.transactions();
        if needed > self.sessions.len() {
            return Err(InterleaveError::TooFewSessions {
                needed,
                have: self.sessions.len(),
            });
        }
        let n = self.sessions.len();
        let mut records: Vec<Option<Record>> = vec![None; script.steps().len()];
        let mut waiting: Vec<Option<Waiting>> = (0..n).map(|_| None).collect();
        let mut state = vec![TxState::Idle; n];

        for (i, step) in script.steps().iter().enumerate() {
            let t = step.tx;
            // A connection runs one statement at a time. If this transaction's previous step
            // still waits on a lock, the next one can only follow it; in a script that is a
            // deadlock, and Postgres ends it by aborting one of the waiters.
            if let Some(mut w) = waiting[t.0].take() {
                let result = self.await_waiting(t, script, &mut w).await?;
                self.finish(
                    &mut records,
                    &mut state,
                    script,
                    w.step,
                    &w.blockers,
                    result,
                    StepId(i - 1),
                )?;
                self.resettle(
                    &mut records,
                    &mut waiting,
                    &mut state,
                    script,
                    StepId(i - 1),
                )
                .await?;
            }
            match state[t.0] {
                TxState::Failed if is_end(step.sql) => {
                    let reply = self.send(t, "rollback").map_err(|e| session(t, e))?;
                    let _ = reply
                        .await
                        .map_err(|_| InterleaveError::SessionGone { tx: t })?;
                    state[t.0] = TxState::Idle;
                    records[i] = Some(record(step, Outcome::RolledBack));
                }
                TxState::Failed => records[i] = Some(record(step, Outcome::Skipped)),
                TxState::Idle | TxState::InTransaction => {
                    let reply = self.send(t, step.sql).map_err(|e| session(t, e))?;
                    match self.settle(t, step.sql, reply).await? {
                        Settled::Done(result) => {
                            let outcome = outcome(t, result)?;
                            state[t.0] = next_state(state[t.0], step.sql, &outcome);
                            records[i] = Some(record(step, outcome));
                        }
                        Settled::Waiting(reply, blockers) => {
                            waiting[t.0] = Some(Waiting {
                                step: StepId(i),
                                reply,
                                blockers,
                            });
                        }
                    }
                }
            }
            // This step may have released locks others wait for (a COMMIT, a ROLLBACK, or an
            // error that aborted its transaction).
            self.resettle(&mut records, &mut waiting, &mut state, script, StepId(i))
                .await?;
        }
        // Whatever still waits at the end of the script finishes now (or the script is stuck).
        let last = StepId(script.steps().len().saturating_sub(1));
        for t in 0..n {
            if let Some(mut w) = waiting[t].take() {
                let result = self.await_waiting(Tx(t), script, &mut w).await?;
                self.finish(
                    &mut records,
                    &mut state,
                    script,
                    w.step,
                    &w.blockers,
                    result,
                    last,
                )?;
                self.resettle(&mut records, &mut waiting, &mut state, script, last)
                    .await?;
            }
        }
        for (t, s) in state.iter().enumerate() {
            if *s != TxState::Idle {
                let reply = self
                    .send(Tx(t), "rollback")
                    .map_err(|e| session(Tx(t), e))?;
                let _ = reply.await;
            }
        }
        Ok(Transcript {
            records: records
                .into_iter()
                .map(|r| r.expect("every step is recorded once it finished"))
                .collect(),
        })
    }

    /// Close every session and the monitor.
    pub async fn close(self) {
        let Self { sessions, monitor } = self;
        for s in sessions {
            drop(s.requests);
            let _ = s.task.await;
        }
        let _ = monitor.close().await;
    }

    fn send(&self, t: Tx, sql: &'static str) -> Result<oneshot::Receiver<StepResult>, sqlx::Error> {
        let (reply, rx) = oneshot::channel();
        self.sessions[t.0]
            .requests
            .send(Request { sql, reply })
            .map_err(|_| sqlx::Error::PoolClosed)?;
        Ok(rx)
    }

    /// Poll until the step has finished or Postgres reports it waiting on a lock.
    async fn settle(
        &mut self,
        t: Tx,
        sql: &'static str,
        mut reply: oneshot::Receiver<StepResult>,
    ) -> Result<Settled, InterleaveError> {
        let pid = self.sessions[t.0].pid;
        let started = Instant::now();
        loop {
            match reply.try_recv() {
                Ok(result) => return Ok(Settled::Done(result)),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(InterleaveError::SessionGone { tx: t });
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // `pg_blocking_pids` reads the lock manager directly: non-empty means this backend
            // is, right now, waiting for a lock those pids hold (a row lock shows up as a wait
            // on the holder's transaction id).
            let blockers: Vec<i32> = sqlx::query_scalar("SELECT pg_blocking_pids($1)")
                .bind(pid)
                .fetch_one(&mut self.monitor)
                .await
                .map_err(InterleaveError::Monitor)?;
            if !blockers.is_empty() {
                return Ok(Settled::Waiting(reply, blockers));
            }
            // Still running, or not yet arrived at the server: ask again.
            if started.elapsed() > STUCK_AFTER {
                return Err(InterleaveError::Stuck {
                    tx: t,
                    sql,
                    waited: started.elapsed(),
                });
            }
            tokio::task::yield_now().await;
        }
    }

    /// Wait for a waiting step to finish: its own transaction has a next step to send.
    async fn await_waiting(
        &mut self,
        t: Tx,
        script: &Script,
        w: &mut Waiting,
    ) -> Result<StepResult, InterleaveError> {
        match tokio::time::timeout(STUCK_AFTER, &mut w.reply).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(InterleaveError::SessionGone { tx: t }),
            Err(_) => Err(InterleaveError::Stuck {
                tx: t,
                sql: script.steps()[w.step.0].sql,
                waited: STUCK_AFTER,
            }),
        }
    }

    /// Record a step that waited and has now finished.
    #[allow(clippy::too_many_arguments)] // the engine's loop state, passed explicitly rather than hidden in a struct
    fn finish(
        &self,
        records: &mut [Option<Record>],
        state: &mut [TxState],
        script: &Script,
        id: StepId,
        blockers: &[i32],
        result: StepResult,
        after: StepId,
    ) -> Result<(), InterleaveError> {
        let step = &script.steps()[id.0];
        let outcome = outcome(step.tx, result)?;
        state[step.tx.0] = next_state(state[step.tx.0], step.sql, &outcome);
        let mut waited_for: Vec<Tx> = blockers
            .iter()
            .filter_map(|pid| self.sessions.iter().position(|s| s.pid == *pid).map(Tx))
            .collect();
        waited_for.sort();
        waited_for.dedup();
        records[id.0] = Some(Record {
            waited_for,
            finished_after: Some(after),
            ..record(step, outcome)
        });
        Ok(())
    }

    /// Look at every waiting step again until none changes: finished ones are recorded (and
    /// may release locks others wait for), the rest are still waiting on a lock.
    async fn resettle(
        &mut self,
        records: &mut [Option<Record>],
        waiting: &mut [Option<Waiting>],
        state: &mut [TxState],
        script: &Script,
        after: StepId,
    ) -> Result<(), InterleaveError> {
        loop {
            let mut finished_one = false;
            for (t, slot) in waiting.iter_mut().enumerate() {
                let Some(w) = slot.take() else { continue };
                let sql = script.steps()[w.step.0].sql;
                let Waiting {
                    step,
                    reply,
                    mut blockers,
                } = w;
                match self.settle(Tx(t), sql, reply).await? {
                    Settled::Done(result) => {
                        self.finish(records, state, script, step, &blockers, result, after)?;
                        finished_one = true;
                    }
                    Settled::Waiting(reply, now) => {
                        // It may now wait for someone else (a third transaction): keep both.
                        blockers.extend(now);
                        *slot = Some(Waiting {
                            step,
                            reply,
                            blockers,
                        });
                    }
                }
            }
            if !finished_one {
                return Ok(());
            }
        }
    }
}

fn session(tx: Tx, source: sqlx::Error) -> InterleaveError {
    InterleaveError::Session { tx, source }
}

fn record(step: &Step, outcome: Outcome) -> Record {
    Record {
        tx: step.tx,
        sql: step.sql,
        name: step.name,
        outcome,
        waited_for: Vec::new(),
        finished_after: None,
    }
}

/// A statement error is an observation (SQLSTATE and message); a broken connection is not.
fn outcome(t: Tx, result: StepResult) -> Result<Outcome, InterleaveError> {
    match result {
        Ok(rows) => Ok(Outcome::Rows(rows)),
        Err(sqlx::Error::Database(e)) => Ok(Outcome::Failed {
            sqlstate: e.code().map(|c| c.into_owned()).unwrap_or_default(),
            message: e.message().to_string(),
        }),
        Err(e) => Err(session(t, e)),
    }
}

fn next_state(now: TxState, sql: &str, outcome: &Outcome) -> TxState {
    match outcome {
        // A failed COMMIT (a serialization failure at commit) has ended the transaction.
        Outcome::Failed { .. } if is_end(sql) => TxState::Idle,
        Outcome::Failed { .. } if now == TxState::InTransaction => TxState::Failed,
        Outcome::Failed { .. } => now,
        _ if is_begin(sql) => TxState::InTransaction,
        _ if is_end(sql) => TxState::Idle,
        _ => now,
    }
}

/// One task per session: run each statement with the simple query protocol, as psql does.
async fn serve(mut conn: PgConnection, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(Request { sql, reply }) = requests.recv().await {
        let result = sqlx::raw_sql(sql)
            .fetch_all(&mut conn)
            .await
            .and_then(|rows| rows.iter().map(decode).collect());
        let _ = reply.send(result);
    }
    let _ = conn.close().await;
}

fn decode(row: &PgRow) -> Result<Row, sqlx::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?))
}
