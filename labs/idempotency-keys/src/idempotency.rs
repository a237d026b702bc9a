//! The key record: who owns a key, how far its request got, and what to replay.
//!
//! ```text
//!   INSERT ... ON CONFLICT DO NOTHING ──inserted──► Owned(started)   (this request does the work)
//!          │ conflict
//!          ▼
//!   SELECT the row ── expired ─────────► DELETE it, try the INSERT again (treated as new)
//!                  ── other fingerprint ► KeyReused (422)
//!                  ── finished ────────► Replay (stored status + bytes)
//!                  ── locked, fresh ───► InFlight (409)
//!                  ── unlocked or stale ► UPDATE ... WHERE lock still free ──► Owned(its recovery point)
//! ```
//!
//! No explicit transaction and no `SELECT ... FOR UPDATE`: the unique index decides the
//! first owner, and a takeover is a compare-and-set `UPDATE` whose `WHERE` Postgres
//! re-checks against the newest row version, so of two retries racing for an abandoned key
//! exactly one gets a row back. Turned down: a check-then-insert (`SELECT`, then `INSERT`),
//! which is the race [`crate::naive`] demonstrates.
//!
//! Each owner gets a fresh `lock_token` (a fencing token). Every later phase updates the row
//! `WHERE lock_token = $token`, so a request that stalled past the lock timeout and lost its
//! key to a retry cannot commit over the retry's work.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::key::{Caller, IdempotencyKey};
use crate::policy::Policy;

/// How far a request got; committed atomically with that phase's side effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPoint {
    /// The key row exists. The provider may or may not have been called.
    Started,
    /// The provider charged and the `payments` row is committed.
    ChargeCreated,
    /// The receipt is queued and the response stored. Only replays from here on.
    Finished,
}

impl RecoveryPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::ChargeCreated => "charge_created",
            Self::Finished => "finished",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "charge_created" => Self::ChargeCreated,
            "finished" => Self::Finished,
            _ => Self::Started,
        }
    }
}

/// This request owns the key and must carry it from `point` to `Finished`.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    pub token: Uuid,
    pub point: RecoveryPoint,
    pub payment_id: Option<i64>,
}

impl Lease {
    /// The idempotency key this request sends to the provider: derived from the key record,
    /// so every retry of the same request sends the same one, and a key that expired and
    /// was reused (a new row, a new id) sends a new one.
    pub fn provider_key(&self) -> String {
        format!("payments-key-{}", self.id)
    }
}

/// A finished request's response, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What to do with an incoming request.
#[derive(Debug)]
pub enum Begin {
    Owned(Lease),
    Replay(StoredResponse),
    InFlight,
    KeyReused,
}

/// This request's lock was taken over by a retry (it stalled past the lock timeout).
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error("the key's lock was taken over by another request")]
    LockLost,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: i64,
    fingerprint: Vec<u8>,
    recovery_point: String,
    locked_at: Option<DateTime<Utc>>,
    payment_id: Option<i64>,
    response_status: Option<i32>,
    response_body: Option<Vec<u8>>,
    expires_at: DateTime<Utc>,
}

/// Claim `key` for this request, or say why not. See the module docs for the decision table.
pub async fn begin(
    pool: &PgPool,
    policy: &Policy,
    now: DateTime<Utc>,
    caller: &Caller,
    key: &IdempotencyKey,
    fingerprint: &[u8],
) -> Result<Begin, sqlx::Error> {
    let expires_at = now + chrono::Duration::from_std(policy.key_ttl).expect("ttl in range");
    let stale_before = now - chrono::Duration::from_std(policy.lock_timeout).expect("in range");
    // Each pass either decides or changes the row (an expired row deleted, a takeover lost to
    // another retry); a few passes settle any race, and a key that keeps changing under us
    // is by definition in flight.
    for _ in 0..4 {
        let token = Uuid::new_v4();
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys
                 (caller, key, fingerprint, recovery_point, locked_at, lock_token, created_at, expires_at)
             VALUES ($1, $2, $3, 'started', $4, $5, $4, $6)
             ON CONFLICT (caller, key) DO NOTHING
             RETURNING id",
        )
        .bind(caller.as_str())
        .bind(key.as_str())
        .bind(fingerprint)
        .bind(now)
        .bind(token)
        .bind(expires_at)
        .fetch_optional(pool)
        .await?;
        if let Some(id) = inserted {
            return Ok(Begin::Owned(Lease {
                id,
                token,
                point: RecoveryPoint::Started,
                payment_id: None,
            }));
        }

        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, fingerprint, recovery_point, locked_at, payment_id,
                    response_status, response_body, expires_at
             FROM idempotency_keys WHERE caller = $1 AND key = $2",
        )
        .bind(caller.as_str())
        .bind(key.as_str())
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { continue }; // reaped between the two statements

        if row.expires_at <= now {
            // An expired key is a new key. Delete only if it is still the expired row.
            sqlx::query("DELETE FROM idempotency_keys WHERE id = $1 AND expires_at <= $2")
                .bind(row.id)
                .bind(now)
                .execute(pool)
                .await?;
            continue;
        }
        if row.fingerprint != fingerprint {
            return Ok(Begin::KeyReused);
        }
        let point = RecoveryPoint::parse(&row.recovery_point);
        if point == RecoveryPoint::Finished {
            return Ok(Begin::Replay(StoredResponse {
                status: row.response_status.unwrap_or(500) as u16,
                body: row.response_body.unwrap_or_default(),
            }));
        }
        if row.locked_at.is_some_and(|at| at > stale_before) {
            return Ok(Begin::InFlight);
        }
        // Unlocked (a handled failure released it) or stale (its request died): take it over.
        let taken: Option<i64> = sqlx::query_scalar(
            "UPDATE idempotency_keys SET locked_at = $2, lock_token = $3
             WHERE id = $1 AND recovery_point <> 'finished'
               AND (locked_at IS NULL OR locked_at <= $4)
             RETURNING id",
        )
        .bind(row.id)
        .bind(now)
        .bind(token)
        .bind(stale_before)
        .fetch_optional(pool)
        .await?;
        if taken.is_some() {
            return Ok(Begin::Owned(Lease {
                id: row.id,
                token,
                point,
                payment_id: row.payment_id,
            }));
        }
    }
    Ok(Begin::InFlight)
}

/// Move the key to `charge_created`, inside the caller's transaction (with the payment row).
pub async fn advance_to_charge_created(
    tx: &mut PgConnection,
    lease: &Lease,
    payment_id: i64,
) -> Result<(), PhaseError> {
    let updated = sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = 'charge_created', payment_id = $3
         WHERE id = $1 AND lock_token = $2",
    )
    .bind(lease.id)
    .bind(lease.token)
    .bind(payment_id)
    .execute(tx)
    .await?;
    if updated.rows_affected() == 1 {
        Ok(())
    } else {
        Err(PhaseError::LockLost)
    }
}

/// Store the response and unlock, inside the caller's transaction (with its last side effect).
pub async fn finish(
    tx: &mut PgConnection,
    lease: &Lease,
    response: &StoredResponse,
) -> Result<(), PhaseError> {
    let updated = sqlx::query(
        "UPDATE idempotency_keys
         SET recovery_point = 'finished', response_status = $3, response_body = $4,
             locked_at = NULL, lock_token = NULL
         WHERE id = $1 AND lock_token = $2",
    )
    .bind(lease.id)
    .bind(lease.token)
    .bind(response.status as i32)
    .bind(&response.body)
    .execute(tx)
    .await?;
    if updated.rows_affected() == 1 {
        Ok(())
    } else {
        Err(PhaseError::LockLost)
    }
}

/// Unlock without finishing (a failure we handled): the next retry resumes at once from the
/// recovery point instead of waiting out the lock timeout.
pub async fn release(pool: &PgPool, lease: &Lease) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET locked_at = NULL, lock_token = NULL
         WHERE id = $1 AND lock_token = $2",
    )
    .bind(lease.id)
    .bind(lease.token)
    .execute(pool)
    .await?;
    Ok(())
}
