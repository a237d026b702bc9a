//! Step 5: what the layer costs. Three closed-loop phases over keep-alive connections, one
//! client by default (`--clients`, `--duration`, `--warmup` reshape them), provider latency
//! 0: a first request under a fresh key, the same request without idempotency, and the
//! replay of a finished key. SQL statements per request are exact counts.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use labkit::http::Connections;
use labkit::measure::Call;
use labkit::{Bound, ClosedLoop, LatencySummary, closed_loop};

use super::Stage;
use crate::client::{pay_on, payment_body};

pub struct Cost {
    pub clients: usize,
    pub duration: Duration,
    pub first: LatencySummary,
    pub none: LatencySummary,
    pub replay: LatencySummary,
    pub first_sql: f64,
    pub none_sql: f64,
    pub replay_sql: f64,
}

pub async fn measure(stage: &Stage<'_>) -> anyhow::Result<Cost> {
    let ctx = stage.ctx;
    let ms = Duration::from_millis;
    let clients = ctx.clients(1);
    let duration = ctx.duration(ctx.scale.pick(ms(500), ms(2000), ms(10_000)));
    let warmup = ctx.warmup(ctx.scale.pick(ms(200), ms(500), ms(1000)));
    let conns = Connections::new(stage.service.addr, clients);
    let body = Bytes::from(serde_json::to_vec(&payment_body(1000))?);
    let load = |label: &str| {
        ClosedLoop::new(clients, Bound::Duration(duration))
            .warmup(warmup)
            .label(format!("cost: {label}"))
    };

    // Every first request (warm-up included) takes the next key; every one of them finishes,
    // so the replay phase can cycle over all of them.
    let keys = Arc::new(AtomicU64::new(0));
    let next_key = {
        let keys = keys.clone();
        move || Some(format!("cost-{}", keys.fetch_add(1, Ordering::Relaxed)))
    };
    let (first, first_sql) = phase(
        stage,
        load("first request, idempotency layer"),
        pay(&conns, &body, "/v1/payments", next_key, false),
    )
    .await?;
    let (none, none_sql) = phase(
        stage,
        load("request without idempotency"),
        pay(&conns, &body, "/lab/no-key/payments", || None, false),
    )
    .await?;
    let (finished, replays) = (keys.load(Ordering::Relaxed), AtomicU64::new(0));
    let replayed_key = move || {
        let i = replays.fetch_add(1, Ordering::Relaxed) % finished;
        Some(format!("cost-{i}"))
    };
    let (replay, replay_sql) = phase(
        stage,
        load("replay of a finished key"),
        pay(&conns, &body, "/v1/payments", replayed_key, true),
    )
    .await?;
    Ok(Cost {
        clients,
        duration,
        first,
        none,
        replay,
        first_sql,
        none_sql,
        replay_sql,
    })
}

/// One load worker's request: `POST path` as caller `cost` under `key()`, which must answer
/// 201 — a replay or not, as `replayed` says.
fn pay(
    conns: &Arc<Connections>,
    body: &Bytes,
    path: &'static str,
    key: impl Fn() -> Option<String> + Send + Sync + 'static,
    replayed: bool,
) -> impl Fn(Call) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static
{
    let (conns, body, key) = (conns.clone(), body.clone(), Arc::new(key));
    move |call: Call| {
        let (conns, body, key) = (conns.clone(), body.clone(), key.clone());
        Box::pin(async move {
            let key = key();
            let mut conn = conns.get(call.worker).await;
            let r = pay_on(&mut conn, path, "cost", key.as_deref(), body)
                .await
                .map_err(|e| e.to_string())?;
            if r.status == 201 && r.replayed == replayed {
                Ok(())
            } else {
                Err(format!("{path}: unexpected {}", r.label()))
            }
        })
    }
}

/// Run one phase; its latencies and the SQL statements per request (warm-up included, so
/// statements and requests are counted over the same requests).
async fn phase<F, Fut>(
    stage: &Stage<'_>,
    cfg: ClosedLoop,
    op: F,
) -> anyhow::Result<(LatencySummary, f64)>
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let label = cfg.label.clone().unwrap_or_default();
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    stage.sql.take();
    let r = closed_loop(cfg, move |call| {
        counted.fetch_add(1, Ordering::Relaxed);
        op(call)
    })
    .await;
    let sql = stage.sql.take() as f64 / sent.load(Ordering::Relaxed).max(1) as f64;
    anyhow::ensure!(
        r.summary.errors == 0,
        "{label}: {} requests failed; the first: {}",
        r.summary.errors,
        r.first_error.unwrap_or_default()
    );
    Ok((r.summary, sql))
}
