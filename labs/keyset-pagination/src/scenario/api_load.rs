//! Under load, over HTTP: the deepest page through the real service ([`api::router`]), by
//! page number and by cursor, from `--clients` keep-alive connections in a closed loop.
//!
//! The depth table times the page query alone, one client at a time. This is what a client
//! of the endpoint sees when several ask at once: the offset response also runs its
//! `COUNT(*)` for `meta.total`, the keyset one reads the planner's estimate, and both share
//! the 2 cores with Postgres and with this driver (labkit's `Connections`: one keep-alive
//! HTTP/1.1 connection per client, in the same process and runtime as the server).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use labkit::http::Connections;
use labkit::{Bound, ClosedLoop, LabCtx, LatencySummary};
use sqlx::PgPool;

use crate::api::{self, AppState};
use crate::cursor::{Cursor, CursorCodec};
use crate::filter::Filter;
use crate::keyset;

/// Clients, measured time and warm-up of each phase: `--clients`, `--duration`,
/// `--warmup`, or 4 clients for 0.5 / 2.5 / 5 s after 0.1 / 0.5 / 1 s by scale.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

impl LoadShape {
    pub fn from_ctx(ctx: &LabCtx) -> Self {
        let ms =
            |smoke, default, large| Duration::from_millis(ctx.scale.pick(smoke, default, large));
        Self {
            clients: ctx.clients(4),
            duration: ctx.duration(ms(500, 2_500, 5_000)),
            warmup: ctx.warmup(ms(100, 500, 1_000)),
        }
    }
}

/// Both phases, measured.
#[derive(Debug)]
pub struct ApiLoad {
    pub page: i64,
    pub shape: LoadShape,
    pub offset: LatencySummary,
    pub keyset: LatencySummary,
    /// The first non-200 answer or connection failure of either phase, if any.
    pub first_error: Option<String>,
}

/// Phase names, as shown on stderr and in the report's `phases`.
pub const OFFSET_PHASE: &str = "offset deepest page (HTTP)";
pub const KEYSET_PHASE: &str = "keyset deepest page (HTTP)";

/// Serve the API on a loopback port and load `page` (the deepest) both ways.
pub async fn run(
    pool: &PgPool,
    page: i64,
    limit: i64,
    shape: LoadShape,
) -> anyhow::Result<ApiLoad> {
    let cursors = CursorCodec::random();
    let server = labkit::http::spawn(api::router(AppState {
        pool: pool.clone(),
        cursors: cursors.clone(),
    }))
    .await?;
    // The cursor a client holds after walking to the page before: the key of its last row.
    let after = keyset::key_at(pool, (page - 1) * limit - 1)
        .await?
        .context("the deepest page has a row before it")?;
    let cursor = cursors.encode(&Cursor {
        after,
        filter: Filter::ALL,
    });
    let by_page = format!("/v1/orders?limit={limit}&page={page}");
    let by_cursor = format!("/v1/orders?limit={limit}&cursor={cursor}");

    let (offset, e1) = phase(server.addr, shape, OFFSET_PHASE, by_page).await;
    let (keyset, e2) = phase(server.addr, shape, KEYSET_PHASE, by_cursor).await;
    server.stop().await;
    Ok(ApiLoad {
        page,
        shape,
        offset,
        keyset,
        first_error: e1.or(e2),
    })
}

async fn phase(
    addr: std::net::SocketAddr,
    shape: LoadShape,
    label: &str,
    path: String,
) -> (LatencySummary, Option<String>) {
    let conns = Connections::new(addr, shape.clients);
    let path = Arc::new(path);
    let cfg = ClosedLoop::new(shape.clients, Bound::Duration(shape.duration))
        .warmup(shape.warmup)
        .label(label);
    let r = labkit::closed_loop(cfg, move |call| {
        let (conns, path) = (conns.clone(), path.clone());
        async move {
            let reply = conns
                .get(call.worker)
                .await
                .get(&path)
                .await
                .map_err(|e| e.to_string())?;
            if reply.status != 200 {
                return Err(format!("{} from {path}", reply.status));
            }
            Ok(())
        }
    })
    .await;
    (r.summary, r.first_error)
}
