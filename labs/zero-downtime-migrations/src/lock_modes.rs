//! The eight table-level lock modes and which conflict — the Postgres docs' table
//! ("Conflicting Lock Modes", §13.3.1), encoded once and checked against the server.
//!
//! Every DDL statement takes one of these on the table it changes. What matters for the app
//! is whether the mode conflicts with ROW EXCLUSIVE (then INSERT/UPDATE/DELETE wait) and
//! with ACCESS SHARE (then even SELECT waits). A waiting request for a strong mode also
//! makes every *later* conflicting request wait behind it: the lock queue is first come,
//! first served, which is the whole war story of scenario 1.

use std::fmt;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// A table-level lock mode, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

use LockMode::*;

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        AccessShare,
        RowShare,
        RowExclusive,
        ShareUpdateExclusive,
        Share,
        ShareRowExclusive,
        Exclusive,
        AccessExclusive,
    ];

    /// As `pg_locks.mode` spells it (`AccessExclusiveLock`).
    pub fn parse(mode: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.pg_locks_name() == mode)
    }

    pub fn pg_locks_name(self) -> &'static str {
        match self {
            AccessShare => "AccessShareLock",
            RowShare => "RowShareLock",
            RowExclusive => "RowExclusiveLock",
            ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            Share => "ShareLock",
            ShareRowExclusive => "ShareRowExclusiveLock",
            Exclusive => "ExclusiveLock",
            AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// As `LOCK TABLE … IN <mode> MODE` and the docs spell it.
    pub fn sql_name(self) -> &'static str {
        match self {
            AccessShare => "ACCESS SHARE",
            RowShare => "ROW SHARE",
            RowExclusive => "ROW EXCLUSIVE",
            ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Share => "SHARE",
            ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Exclusive => "EXCLUSIVE",
            AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The docs' conflict table. Symmetric; the test below checks that.
    pub fn conflicts_with(self, other: LockMode) -> bool {
        let (a, b) = if self <= other {
            (self, other)
        } else {
            (other, self)
        };
        match a {
            AccessShare => b == AccessExclusive,
            RowShare => b >= Exclusive,
            RowExclusive => b >= Share,
            ShareUpdateExclusive => b >= ShareUpdateExclusive,
            Share => b != Share && b >= ShareUpdateExclusive,
            ShareRowExclusive | Exclusive | AccessExclusive => true,
        }
    }

    /// Held by a migration, does it make the app's INSERT/UPDATE/DELETE wait?
    pub fn blocks_writes(self) -> bool {
        self.conflicts_with(RowExclusive)
    }

    /// Held by a migration, does it make the app's SELECT wait?
    pub fn blocks_reads(self) -> bool {
        self.conflicts_with(AccessShare)
    }

    /// "reads and writes", "writes", "nothing the app does".
    pub fn blocks(self) -> &'static str {
        match (self.blocks_reads(), self.blocks_writes()) {
            (true, _) => "reads and writes",
            (false, true) => "writes",
            (false, false) => "no app query",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// One cell of the conflict table as the server behaved.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub held: LockMode,
    pub requested: LockMode,
    pub docs_say_conflict: bool,
    pub server_said_conflict: bool,
}

/// Ask the server for every pair: t1 holds `LOCK TABLE t IN <held> MODE`, t2 tries
/// `LOCK TABLE t IN <requested> MODE NOWAIT`; a conflict is SQLSTATE 55P03 (lock not
/// available). 64 pairs, a few milliseconds each. `table` must exist.
pub async fn check_against_server(
    t1: &mut PgConnection,
    t2: &mut PgConnection,
    table: &str,
) -> Result<Vec<Checked>, sqlx::Error> {
    let mut out = Vec::with_capacity(64);
    for held in LockMode::ALL {
        for requested in LockMode::ALL {
            let mut tx1 = t1.begin().await?;
            // Identifiers and lock modes cannot be bound; both come from this file's constants
            // and the caller's fixed table name.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "LOCK TABLE {table} IN {held} MODE"
            )))
            .execute(&mut *tx1)
            .await?;
            let mut tx2 = t2.begin().await?;
            let tried = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "LOCK TABLE {table} IN {requested} MODE NOWAIT"
            )))
            .execute(&mut *tx2)
            .await;
            let server_said_conflict = match tried {
                Ok(_) => false,
                Err(e) if is_lock_not_available(&e) => true,
                Err(e) => return Err(e),
            };
            tx2.rollback().await?;
            tx1.rollback().await?;
            out.push(Checked {
                held,
                requested,
                docs_say_conflict: held.conflicts_with(requested),
                server_said_conflict,
            });
        }
    }
    Ok(out)
}

/// SQLSTATE 55P03: `lock_timeout` expired or `NOWAIT` found the lock taken.
pub fn is_lock_not_available(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// Render a duration for lock settings (`SET lock_timeout = '50ms'`).
pub fn pg_interval(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflict_table_is_symmetric_and_matches_the_docs_rows() {
        for a in LockMode::ALL {
            for b in LockMode::ALL {
                assert_eq!(a.conflicts_with(b), b.conflicts_with(a), "{a} vs {b}");
            }
        }
        // The rows of the docs' table, as counts of conflicting modes.
        let counts: Vec<usize> = LockMode::ALL
            .iter()
            .map(|a| {
                LockMode::ALL
                    .iter()
                    .filter(|b| a.conflicts_with(**b))
                    .count()
            })
            .collect();
        assert_eq!(counts, [1, 2, 4, 5, 5, 6, 7, 8]);
        assert!(!AccessShare.conflicts_with(RowExclusive));
        assert!(Share.blocks_writes() && !Share.blocks_reads());
        assert!(!ShareUpdateExclusive.blocks_writes());
        assert!(AccessExclusive.blocks_reads());
        assert_eq!(
            LockMode::parse("ShareRowExclusiveLock"),
            Some(ShareRowExclusive)
        );
    }
}
