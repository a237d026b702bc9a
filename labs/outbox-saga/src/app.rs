//! The HTTP face of the shop: place an order, watch its saga, cancel it, look at the shelves,
//! and (it is a lab) arm a crash.
//!
//! `POST /orders` answers `202 Accepted` as soon as the order, its saga and the first command
//! are committed — the saga runs behind it, and `GET /orders/{id}` shows the saga log as it
//! grows. One [`router`] serves `lab serve`, the run, the tests.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use labkit::http::{JsonBody, error_response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::crash::CrashPoint;
use crate::fleet::Shop;
use crate::orders::NewOrder;
use crate::saga::{self, Cancel};
use crate::{schema, warehouse};

/// Largest quantity one order may ask for.
pub const MAX_QUANTITY: i32 = 10;

#[derive(Clone, Debug)]
pub struct AppState {
    pub shop: Arc<Shop>,
}

/// The one router: `lab serve`, the run and the tests all call this.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/stock", get(stock))
        .route("/lab/crash", post(arm_crash))
        .fallback(labkit::http::not_found)
        .method_not_allowed_fallback(labkit::http::method_not_allowed)
        .with_state(state);
    // A 413 with a JSON body for oversized bodies, without a connection reset in its place.
    labkit::http::body_limit(router, 64 * 1024)
}

/// Everything a handler can answer besides success; never SQL text to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// (code, message)
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("order id must be a UUID")]
    BadId,
    #[error("no order {0}")]
    NotFound(Uuid),
    #[error("the saga already finished: {0}")]
    AlreadyFinished(&'static str),
    #[error("internal error")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Invalid(code, _) => (StatusCode::UNPROCESSABLE_ENTITY, *code),
            Self::BadId => (StatusCode::BAD_REQUEST, "invalid_order_id"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "order_not_found"),
            Self::AlreadyFinished(_) => (StatusCode::CONFLICT, "saga_finished"),
            Self::Db(e) => {
                tracing::error!("database error: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        error_response(status, code, &self)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub sku: String,
    pub quantity: i32,
    /// A Stripe-style test token; `tok_chargeDeclined` is declined. Defaults to `tok_visa`.
    #[serde(default)]
    pub card: Option<String>,
    #[serde(default)]
    pub customer_id: Option<i64>,
}

impl PlaceOrder {
    /// Parse at the edge: a known SKU, a sane quantity, a plausible card token.
    pub fn parse(self) -> Result<NewOrder, ApiError> {
        if schema::product(&self.sku).is_none() {
            let known: Vec<&str> = schema::CATALOGUE.iter().map(|p| p.sku).collect();
            return Err(ApiError::Invalid(
                "unknown_sku",
                format!("sku must be one of {}", known.join(", ")),
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&self.quantity) {
            return Err(ApiError::Invalid(
                "invalid_quantity",
                format!("quantity must be between 1 and {MAX_QUANTITY}"),
            ));
        }
        let card = self.card.unwrap_or_else(|| "tok_visa".into());
        if card.is_empty() || card.len() > 64 || !card.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ApiError::Invalid(
                "invalid_card",
                "card must be a token of 1-64 printable ASCII characters".into(),
            ));
        }
        Ok(NewOrder::new(
            self.customer_id.unwrap_or(1),
            &self.sku,
            self.quantity,
            &card,
        ))
    }
}

async fn place(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<PlaceOrder>,
) -> Result<Response, ApiError> {
    let order = body.parse()?;
    saga::place_order(&s.shop.svc.orders, &order).await?;
    let location = format!("/orders/{}", order.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        Json(json!({
            "order_id": order.id,
            "amount_cents": order.amount_cents(),
            "saga_state": "reserving",
            "watch": location,
        })),
    )
        .into_response())
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::BadId)
}

async fn show(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    match saga::view(&s.shop.svc.orders, id).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::NotFound(id)),
    }
}

async fn cancel(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    match saga::request_cancel(&s.shop.svc.orders, id).await? {
        Cancel::Requested => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "order_id": id, "cancel_requested": true })),
        )
            .into_response()),
        Cancel::Finished(state) => Err(ApiError::AlreadyFinished(state.as_str())),
        Cancel::NotFound => Err(ApiError::NotFound(id)),
    }
}

async fn stock(State(s): State<AppState>) -> Result<Response, ApiError> {
    let shelves = warehouse::shelves(&s.shop.svc.warehouse).await?;
    let map: serde_json::Map<String, serde_json::Value> =
        shelves.into_iter().map(|(k, v)| (k, json!(v))).collect();
    Ok(Json(json!({ "on_hand": map })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmCrash {
    at: String,
}

/// Arm one crash at a named point; the supervisor restarts the process that hits it.
async fn arm_crash(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<ArmCrash>,
) -> Result<Response, ApiError> {
    let Some(point) = CrashPoint::parse(&body.at) else {
        let names: Vec<String> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
        return Err(ApiError::Invalid(
            "unknown_crash_point",
            format!("at must be one of {}", names.join(", ")),
        ));
    };
    s.shop.crashes.arm_once(point);
    Ok(Json(json!({ "armed": point.name(), "fires": "once, at the next pass" })).into_response())
}
