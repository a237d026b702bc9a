//! Step 8: the hard edges a new user finds — the [`bad_input`] corpus sent to the service:
//! every answer must be the expected 4xx with a JSON error, with nothing stored or charged.

use super::Stage;
use crate::bad_input::{self, TOKEN};
use crate::key::Caller;

pub struct HardEdges {
    pub requests: usize,
    pub server_errors: usize,
    /// What did not get its expected status and `error.code` (a 5xx, no JSON body, ...).
    pub unexpected: Vec<String>,
    /// Rows stored plus provider charges for any of them.
    pub side_effects: i64,
}

pub async fn bad_requests(stage: &Stage<'_>) -> anyhow::Result<HardEdges> {
    let corpus = bad_input::corpus();
    let (mut server_errors, mut unexpected) = (0, Vec::new());
    for bad in &corpus {
        let got = bad_input::send(&stage.http, stage.service.addr, bad).await;
        server_errors += usize::from(got.status >= 500);
        if (got.status, got.code.as_deref()) != (bad.status, Some(bad.code)) {
            unexpected.push(format!(
                "POST {} with {}: {} {}",
                bad.path,
                bad.what,
                got.status,
                got.code.as_deref().unwrap_or("(no JSON error body)")
            ));
        }
    }
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM idempotency_keys WHERE caller = $1)
              + (SELECT count(*) FROM naive_idempotency_keys WHERE caller = $1)
              + (SELECT count(*) FROM payments WHERE caller = $1)
              + (SELECT count(*) FROM webhook_events WHERE event_id LIKE 'evt_bad%')",
    )
    .bind(Caller::from_token(TOKEN).as_str())
    .fetch_one(stage.pool())
    .await?;
    let charges = stage.charges(TOKEN) + stage.app.provider.charges_for(TOKEN);
    Ok(HardEdges {
        requests: corpus.len(),
        server_errors,
        unexpected,
        side_effects: rows + charges as i64,
    })
}
