//! Step 1: a phone on a train. The client gives up after 100 ms, the provider takes 200 ms,
//! and the client retries five times — without a key, then with one.

use std::time::Duration;

use super::Stage;
use crate::client::{payment_body, post_payment};

pub struct RetryStory {
    pub attempts: usize,
    pub client_timeout: Duration,
    pub provider_latency: Duration,
    pub no_key_outcomes: Vec<String>,
    pub no_key_charges: usize,
    pub guarded_outcomes: Vec<String>,
    pub guarded_charges: usize,
}

pub async fn after_timeouts(stage: &Stage<'_>) -> anyhow::Result<RetryStory> {
    const ATTEMPTS: usize = 5;
    let provider_latency = Duration::from_millis(200);
    let client_timeout = Duration::from_millis(100);
    let backoff = Duration::from_millis(50);
    let provider = &stage.app.provider;
    provider.set_latency(provider_latency);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(client_timeout)
        .build()?;

    // The mobile client: send, and on a timeout or a 409 wait a little and send again.
    let attempt_all = |path: &'static str, token: &'static str, key: Option<&'static str>| {
        let client = client.clone();
        let url = stage.url(path);
        async move {
            let mut outcomes = Vec::new();
            for _ in 0..ATTEMPTS {
                match post_payment(&client, &url, token, key, &payment_body(4200)).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        outcomes.push(r.label());
                        break;
                    }
                    Ok(r) => outcomes.push(r.label()),
                    Err(e) if e.is_timeout() => outcomes.push("timeout".into()),
                    Err(e) => outcomes.push(format!("error: {e}")),
                }
                // A sleep in the *client* is the retry backoff being simulated, not test ordering.
                tokio::time::sleep(backoff).await;
            }
            outcomes
        }
    };
    let no_key_outcomes = attempt_all("/lab/no-key/payments", "retry-no-key", None).await;
    provider.settle().await;
    let guarded_outcomes =
        attempt_all("/v1/payments", "retry-with-key", Some("checkout-7f3a")).await;
    provider.settle().await;
    provider.set_latency(Duration::ZERO);
    Ok(RetryStory {
        attempts: no_key_outcomes.len(),
        client_timeout,
        provider_latency,
        no_key_charges: stage.charges("retry-no-key"),
        guarded_charges: stage.charges("retry-with-key"),
        no_key_outcomes,
        guarded_outcomes,
    })
}
