//! The system under test, assembled in one place: the payment provider on its own loopback
//! server, and the payments service's state and router around it. [`assemble`] and
//! [`App::router`] are what the lab run, `lab serve`, the tests and the bench all use.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/payments` | the payment, exactly once per `Idempotency-Key` ([`crate::payments`]) |
//! | `POST /v1/webhooks/provider` | the provider's event inbox ([`crate::webhooks`]) |
//! | `POST /lab/no-key/payments`, `POST /lab/naive/payments` | the implementations not to ship ([`crate::naive`]) |
//! | `POST /lab/faults` | arm a crash after a recovery point ([`crate::faults`]) |
//! | `/lab/provider/*` | the provider's own API (`/control`, `/v1/charges`), mounted for curl |

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use labkit::http::{JsonBody, TestServer};
use serde::Deserialize;
use sqlx::PgPool;

use crate::faults::{FaultPoint, Faults};
use crate::policy::{Clock, Policy};
use crate::provider::{self, Provider, ProviderClient};

/// Everything a handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub provider: ProviderClient,
    pub policy: Policy,
    pub clock: Clock,
    pub faults: Faults,
}

/// The service's state and the provider it calls (the provider's ledger is the truth about
/// how many times a customer paid). Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    pub state: AppState,
    pub provider: Provider,
}

/// Start the provider on a loopback port and build the service around it, with the default
/// [`Policy`] and the system clock. Keep the returned provider server alive as long as the
/// app (it stops when dropped).
pub async fn assemble(pool: PgPool) -> std::io::Result<(App, TestServer)> {
    let (provider, provider_server) = provider::spawn().await?;
    let policy = Policy::default();
    let state = AppState {
        provider: ProviderClient::new(provider_server.base_url(), policy.provider_timeout),
        pool,
        policy,
        clock: Clock::system(),
        faults: Faults::default(),
    };
    Ok((App { state, provider }, provider_server))
}

impl App {
    /// The service. `/lab/*` routes are the implementations not to ship and the lab's knobs.
    pub fn router(&self) -> Router {
        let service = Router::new()
            .route("/v1/payments", post(crate::payments::create_payment))
            .route("/v1/webhooks/provider", post(crate::webhooks::receive))
            .route(
                "/lab/no-key/payments",
                post(crate::naive::create_payment_without_key),
            )
            .route(
                "/lab/naive/payments",
                post(crate::naive::create_payment_check_then_insert),
            )
            .route("/lab/faults", post(arm_fault))
            .fallback(labkit::http::not_found)
            .method_not_allowed_fallback(labkit::http::method_not_allowed)
            .with_state(self.state.clone())
            // The same provider the service calls on its own port, reachable from {base}.
            .nest("/lab/provider", self.provider.router());
        // 413 with a JSON body for oversized bodies, without a connection reset in its place.
        labkit::http::body_limit(service, self.state.policy.max_body_bytes)
    }

    /// Another process of the same service — what replaces a crashed one: same database and
    /// provider, its own clock (moving it past the lock timeout disturbs no one else) and
    /// its own faults.
    pub fn another_instance(&self) -> App {
        let mut app = self.clone();
        app.state.clock = Clock::system();
        app.state.faults = Faults::default();
        app
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFault {
    crash_at: FaultPoint,
}

/// `POST /lab/faults {"crash_at": "after_provider_charge"}`: the next payment crashes there.
async fn arm_fault(
    State(state): State<AppState>,
    JsonBody(ArmFault { crash_at }): JsonBody<ArmFault>,
) -> Json<serde_json::Value> {
    state.faults.arm(crash_at);
    Json(serde_json::json!({ "armed": crash_at }))
}
