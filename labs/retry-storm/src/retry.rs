//! Retries — tower's `Retry` middleware and tower's `TpsBudget`, with a small policy of ours.
//!
//! Which is whose: the retry loop ([`tower::retry::Retry`]), the per-attempt timeout
//! ([`tower::timeout::Timeout`]) and the budget's token bucket
//! ([`tower::retry::budget::TpsBudget`], Finagle's design) are tower's — the production
//! answer, used as is. The [`Attempts`] policy is ours and is three lines of judgement:
//! retry a failure (never a success, never a 4xx, never a call our own bulkhead shed), at
//! most `max` attempts in all, and — when there is a budget — only while the budget allows.
//!
//! The budget (the SRE book's "Handling Overload": retries at most ~10 % of requests): every
//! request deposits one token when its first attempt ends; every retry withdraws ten. With
//! `min_per_sec = 0`, after M requests at most M / 10 retries have been made, however hard
//! the dependency fails — amplification is capped at 1.1×, not 3× or 27×.
//!
//! The retries here are immediate on purpose: "every layer retries three times immediately"
//! is the war story, and the amplification it causes is the lesson. The backoff formulas that
//! spread retries out are in [`crate::jitter`].

use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;
use tower::retry::budget::{Budget, TpsBudget};

/// A retry budget shared by every request of one service instance.
pub type RetryBudget = Arc<TpsBudget>;

/// The SRE book's per-client budget: retries may be at most 10 % of requests. No reserve
/// (`min_per_sec = 0`), so the ratio holds exactly from the first request; deposits are
/// remembered for 10 s.
pub fn sre_budget() -> RetryBudget {
    Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.1))
}

/// An error the caller must not retry: a 4xx from downstream, or our own bulkhead refusing.
pub fn retryable(err: &BoxError) -> bool {
    if err.is::<tower::load_shed::error::Overloaded>() {
        return false;
    }
    match err.downcast_ref::<crate::app::HopError>() {
        Some(crate::app::HopError::Status(s)) => !s.is_client_error(),
        _ => true,
    }
}

/// At most `max` attempts per request, within the budget when there is one. Cloned per
/// request by `tower::retry::Retry`, so `attempt` counts this request's attempts.
#[derive(Debug, Clone)]
pub struct Attempts {
    max: u32,
    attempt: u32,
    budget: Option<RetryBudget>,
}

impl Attempts {
    pub fn new(max: u32, budget: Option<RetryBudget>) -> Self {
        Self {
            max: max.max(1),
            attempt: 1,
            budget,
        }
    }
}

impl<Req: Clone, Res> tower::retry::Policy<Req, Res, BoxError> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        if self.attempt == 1
            && let Some(budget) = &self.budget
        {
            budget.deposit();
        }
        let err = result.as_ref().err()?;
        if self.attempt >= self.max || !retryable(err) {
            return None;
        }
        if let Some(budget) = &self.budget
            && !budget.withdraw()
        {
            return None;
        }
        self.attempt += 1;
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}
