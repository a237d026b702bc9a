//! Step 4: a crash after each recovery point, and two provider failures, then retries — at
//! once, and after the lock timeout — on a second instance of the service (what replaces a
//! crashed process), whose clock is moved past the lock timeout instead of sleeping.

use std::time::Duration;

use super::Stage;
use crate::client::{payment_body, post_payment};
use crate::faults::FaultPoint;
use crate::key::Caller;

pub struct CrashRow {
    pub failure: String,
    pub first: String,
    pub immediate: String,
    pub after_timeout: String,
    pub charges: usize,
    pub payments: i64,
    pub receipts: i64,
}

pub struct Crash {
    pub rows: Vec<CrashRow>,
    pub max_charges: usize,
    pub lock_timeout: Duration,
}

#[derive(Clone, Copy)]
enum Failure {
    Crash(FaultPoint),
    ProviderDownBeforeCharge,
    ProviderErrorAfterCharge,
}

pub async fn crash_and_retry(stage: &Stage<'_>) -> anyhow::Result<Crash> {
    let instance = stage.app.another_instance();
    let (state, provider) = (&instance.state, &instance.provider);
    let server = labkit::http::spawn(instance.router()).await?;
    let url = server.url("/v1/payments");

    let mut failures: Vec<Failure> = FaultPoint::ALL.into_iter().map(Failure::Crash).collect();
    failures.push(Failure::ProviderDownBeforeCharge);
    failures.push(Failure::ProviderErrorAfterCharge);
    let mut rows = Vec::new();
    for (i, failure) in failures.into_iter().enumerate() {
        let label = match failure {
            Failure::Crash(p) => {
                state.faults.arm(p);
                format!("crash {}", p.as_str())
            }
            Failure::ProviderDownBeforeCharge => {
                provider.fail_next(1);
                "provider 503 before charging".to_string()
            }
            Failure::ProviderErrorAfterCharge => {
                provider.fail_after_charge_next(1);
                "provider 500 after charging".to_string()
            }
        };
        let token = format!("crash-{i}");
        let body = payment_body(2500);
        let send = || post_payment(&stage.http, &url, &token, Some("order-1"), &body);
        let first = send().await?;
        let immediate = send().await?;
        state
            .clock
            .advance(state.policy.lock_timeout + Duration::from_secs(1));
        let after = send().await?;
        let caller = Caller::from_token(&token);
        let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE caller = $1")
            .bind(caller.as_str())
            .fetch_one(stage.pool())
            .await?;
        let receipts: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM receipt_outbox o JOIN payments p ON p.id = o.payment_id
             WHERE p.caller = $1",
        )
        .bind(caller.as_str())
        .fetch_one(stage.pool())
        .await?;
        rows.push(CrashRow {
            failure: label,
            first: first.label(),
            immediate: immediate.label(),
            after_timeout: after.label(),
            charges: stage.charges(&token),
            payments,
            receipts,
        });
    }
    server.stop().await;
    Ok(Crash {
        max_charges: rows.iter().map(|r| r.charges).max().unwrap_or(0),
        lock_timeout: state.policy.lock_timeout,
        rows,
    })
}
