//! The two implementations not to ship, served under `/lab/*` so the lab can measure them.
//!
//! - `POST /lab/no-key/payments`: no idempotency at all. Every retry is a new charge.
//! - `POST /lab/naive/payments`: the check-then-insert most real implementations ship. It
//!   looks up the key, and if there is no record it charges and *then* writes the record.
//!   Two retries that both run the `SELECT` before either runs the `INSERT` both charge —
//!   and the window is the whole provider call. There is no unique constraint to stop the
//!   second `INSERT`, and no provider key to stop the second charge.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use labkit::http::JsonBody;

use crate::app::AppState;
use crate::errors::{ApiError, json_bytes};
use crate::key::{Caller, IdempotencyKey};
use crate::payments::{Body, PaymentRequest, REPLAYED_HEADER, charge_request, insert_payment};
use crate::provider::ProviderError;

/// No key: charge, record, answer.
pub async fn create_payment_without_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body<PaymentRequest>,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&headers).ok_or(ApiError::Unauthorized)?;
    let JsonBody(req) = body?;
    let req = req.validated()?;
    let body = charge_and_record(&state, &caller, &req).await?;
    Ok((StatusCode::CREATED, json_bytes(body)).into_response())
}

/// Check, then charge, then insert. The bug is the gap between the first and last step.
pub async fn create_payment_check_then_insert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body<PaymentRequest>,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&headers).ok_or(ApiError::Unauthorized)?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let JsonBody(req) = body?;
    let req = req.validated()?;

    // 1. Check.
    let seen: Option<(i32, Vec<u8>)> = sqlx::query_as(
        "SELECT response_status, response_body FROM naive_idempotency_keys
         WHERE caller = $1 AND key = $2 LIMIT 1",
    )
    .bind(caller.as_str())
    .bind(key.as_str())
    .fetch_optional(&state.pool)
    .await?;
    if let Some((status, body)) = seen {
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        let mut resp = (status, json_bytes(body)).into_response();
        resp.headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return Ok(resp);
    }
    // 2. Charge (every concurrent duplicate that passed step 1 is here too).
    let body = charge_and_record(&state, &caller, &req).await?;
    // 3. Insert the record. Nothing stops a second row for the same key.
    sqlx::query(
        "INSERT INTO naive_idempotency_keys (caller, key, response_status, response_body)
         VALUES ($1, $2, 201, $3)",
    )
    .bind(caller.as_str())
    .bind(key.as_str())
    .bind(&body)
    .execute(&state.pool)
    .await?;
    Ok((StatusCode::CREATED, json_bytes(body)).into_response())
}

/// Charge without a provider key and record the payment; the response body.
async fn charge_and_record(
    state: &AppState,
    caller: &Caller,
    req: &PaymentRequest,
) -> Result<Vec<u8>, ApiError> {
    let charge = match state
        .provider
        .charge(None, &charge_request(caller, req))
        .await
    {
        Ok(c) => c,
        Err(ProviderError::Declined) => {
            return Err(ApiError::InvalidRequest("the card was declined".into()));
        }
        Err(ProviderError::Unavailable(_)) => return Err(ApiError::ProviderUnavailable),
    };
    let mut conn = state.pool.acquire().await?;
    let payment = insert_payment(&mut conn, caller, req, &charge.id, state.clock.now()).await?;
    Ok(serde_json::to_vec(&payment).expect("json serialises"))
}
