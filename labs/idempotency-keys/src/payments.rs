//! `POST /v1/payments`: charge a card exactly once, however often the client retries.
//!
//! Three atomic phases, each committed together with its recovery point:
//!
//! | phase | side effects, in one transaction | recovery point after |
//! |---|---|---|
//! | 1. claim the key | `idempotency_keys` row ([`crate::idempotency::begin`]) | `started` |
//! | 2. charge | provider call (outside the transaction, with a provider key), then the `payments` row | `charge_created` |
//! | 3. finish | `receipt_outbox` row + the stored response | `finished` |
//!
//! A request that dies between phases leaves the key at the last committed point; the retry
//! that takes the key over starts right there. Phase 2's provider call is the one step that
//! can't join a transaction, so it carries the provider-side key: repeating it returns the
//! first charge instead of making a second.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use labkit::http::JsonBody;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tracing::Instrument;

use crate::app::AppState;
use crate::errors::{ApiError, json_bytes};
use crate::faults::FaultPoint;
use crate::idempotency::{self, Begin, Lease, PhaseError, RecoveryPoint, StoredResponse};
use crate::key::{Caller, IdempotencyKey, fingerprint};
use crate::provider::{ChargeRequest, ProviderError};

/// The marker on a replayed response (Stripe's name). The replay's *body* is the stored bytes,
/// untouched; anything per-response belongs in headers.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
pub const POLICY_HEADER: &str = "idempotency-policy";

/// The request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub amount_cents: i64,
    pub currency: String,
    pub source: String,
}

impl PaymentRequest {
    /// Check the business rules and normalise (the canonical form is what gets fingerprinted).
    pub fn validated(mut self) -> Result<Self, ApiError> {
        if !(1..=99_999_999).contains(&self.amount_cents) {
            return Err(ApiError::InvalidRequest(
                "amount_cents must be between 1 and 99999999".into(),
            ));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ApiError::InvalidRequest(
                "currency must be a three-letter ISO 4217 code".into(),
            ));
        }
        self.currency.make_ascii_lowercase();
        if self.source.is_empty()
            || self.source.len() > 64
            || !self.source.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ApiError::InvalidRequest(
                "source must be 1 to 64 printable ASCII characters".into(),
            ));
        }
        Ok(self)
    }
}

/// A payment as stored and returned.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Payment {
    pub id: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub provider_charge_id: String,
    pub status: String,
}

/// Insert the local record of a provider charge.
pub(crate) async fn insert_payment(
    conn: &mut PgConnection,
    caller: &Caller,
    req: &PaymentRequest,
    provider_charge_id: &str,
    now: DateTime<Utc>,
) -> Result<Payment, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO payments (caller, amount_cents, currency, provider_charge_id, created_at)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, amount_cents, currency, provider_charge_id, 'succeeded' AS status",
    )
    .bind(caller.as_str())
    .bind(req.amount_cents)
    .bind(&req.currency)
    .bind(provider_charge_id)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub(crate) fn charge_request(caller: &Caller, req: &PaymentRequest) -> ChargeRequest {
    ChargeRequest {
        amount_cents: req.amount_cents,
        currency: req.currency.clone(),
        source: req.source.clone(),
        customer: caller.as_str().to_string(),
    }
}

/// The body as [`JsonBody`] read it, or its 4xx (checked after the caller and the key).
pub type Body<T> = Result<JsonBody<T>, Response>;

/// The handler. The work runs in its own task: a client that hangs up mid-request would
/// otherwise cancel us between phases and leave the key locked until the lock timeout.
pub async fn create_payment(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body<PaymentRequest>,
) -> Response {
    let policy = state.policy.header_value();
    let work = handle(state, method, uri.path().to_string(), headers, body);
    let mut resp = match tokio::spawn(work.in_current_span()).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::TaskFailed.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&policy) {
        resp.headers_mut().insert(POLICY_HEADER, v);
    }
    resp
}

async fn handle(
    state: AppState,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Body<PaymentRequest>,
) -> Result<Response, ApiError> {
    // Parse everything at the edge: nothing is stored for a request we can't understand.
    let caller = Caller::from_headers(&headers).ok_or(ApiError::Unauthorized)?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let JsonBody(req) = body?;
    let req = req.validated()?;
    let canonical = serde_json::to_vec(&req).expect("json serialises");
    let fp = fingerprint(&method, &path, &canonical);

    let now = state.clock.now();
    let lease =
        match idempotency::begin(&state.pool, &state.policy, now, &caller, &key, &fp).await? {
            Begin::Owned(lease) => lease,
            Begin::Replay(stored) => {
                let mut resp = respond(&stored);
                resp.headers_mut()
                    .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
                return Ok(resp);
            }
            Begin::InFlight => return Err(ApiError::InFlight),
            Begin::KeyReused => return Err(ApiError::KeyReused),
        };

    match run_phases(&state, &caller, &req, lease.clone()).await {
        Ok(stored) => Ok(respond(&stored)),
        // A crash runs no cleanup: the key stays locked, as a dead process would leave it.
        Err(Stop::Crash(point)) => Err(ApiError::SimulatedCrash(point)),
        Err(Stop::ProviderUnavailable) => {
            idempotency::release(&state.pool, &lease).await?;
            Err(ApiError::ProviderUnavailable)
        }
        // A retry took the key over while we stalled; it owns the outcome now.
        Err(Stop::Phase(PhaseError::LockLost)) => Err(ApiError::InFlight),
        Err(Stop::Phase(PhaseError::Db(e))) => {
            let _ = idempotency::release(&state.pool, &lease).await;
            Err(ApiError::Internal(e))
        }
    }
}

/// Why the phases stopped short of a response.
enum Stop {
    Crash(FaultPoint),
    ProviderUnavailable,
    Phase(PhaseError),
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Stop::Phase(PhaseError::Db(e))
    }
}

impl From<PhaseError> for Stop {
    fn from(e: PhaseError) -> Self {
        Stop::Phase(e)
    }
}

fn crash_if_armed(state: &AppState, point: FaultPoint) -> Result<(), Stop> {
    if state.faults.trip(point) {
        Err(Stop::Crash(point))
    } else {
        Ok(())
    }
}

/// Carry the key from its recovery point to `finished`.
async fn run_phases(
    state: &AppState,
    caller: &Caller,
    req: &PaymentRequest,
    mut lease: Lease,
) -> Result<StoredResponse, Stop> {
    let mut payment: Option<Payment> = None;

    if lease.point == RecoveryPoint::Started {
        crash_if_armed(state, FaultPoint::AfterKeyStarted)?;
        // Phase 2a: the provider call, outside any transaction (never hold a transaction open
        // across a network call), with the key derived from our key record.
        let charge = match state
            .provider
            .charge(Some(&lease.provider_key()), &charge_request(caller, req))
            .await
        {
            Ok(charge) => charge,
            Err(ProviderError::Declined) => {
                // A definite answer: store it, so a retry replays the decline instead of
                // asking the provider again.
                let stored = StoredResponse {
                    status: StatusCode::PAYMENT_REQUIRED.as_u16(),
                    body: ApiError::body("card_declined", "the card was declined"),
                };
                let mut tx = state.pool.begin().await?;
                idempotency::finish(&mut tx, &lease, &stored).await?;
                tx.commit().await?;
                return Ok(stored);
            }
            // Ambiguous (it may have charged): release the key; a retry repeats the call
            // with the same provider key and learns the truth.
            Err(ProviderError::Unavailable(_)) => return Err(Stop::ProviderUnavailable),
        };
        crash_if_armed(state, FaultPoint::AfterProviderCharge)?;

        // Phase 2b: the local record of the charge and the recovery point, atomically.
        let mut tx = state.pool.begin().await?;
        let p = insert_payment(&mut tx, caller, req, &charge.id, state.clock.now()).await?;
        idempotency::advance_to_charge_created(&mut tx, &lease, p.id).await?;
        tx.commit().await?;
        lease.point = RecoveryPoint::ChargeCreated;
        lease.payment_id = Some(p.id);
        payment = Some(p);
        crash_if_armed(state, FaultPoint::AfterChargeRecorded)?;
    }

    // Phase 3: queue the receipt and store the response, atomically.
    let payment = match payment {
        Some(p) => p,
        None => {
            sqlx::query_as(
                "SELECT id, amount_cents, currency, provider_charge_id, 'succeeded' AS status
                 FROM payments WHERE id = $1",
            )
            .bind(lease.payment_id)
            .fetch_one(&state.pool)
            .await?
        }
    };
    let stored = StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        body: serde_json::to_vec(&payment).expect("json serialises"),
    };
    let mut tx = state.pool.begin().await?;
    sqlx::query("INSERT INTO receipt_outbox (payment_id, queued_at) VALUES ($1, $2)")
        .bind(payment.id)
        .bind(state.clock.now())
        .execute(&mut *tx)
        .await?;
    idempotency::finish(&mut tx, &lease, &stored).await?;
    tx.commit().await?;
    crash_if_armed(state, FaultPoint::AfterFinished)?;
    Ok(stored)
}

/// The stored status and bytes, as a response. The first caller gets exactly what replays get.
fn respond(stored: &StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, json_bytes(stored.body.clone())).into_response()
}
