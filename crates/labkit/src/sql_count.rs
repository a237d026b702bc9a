//! Exact SQL statement counting for a section of code.
//!
//! sqlx emits one `tracing` event (target `sqlx::query`) for every statement it executes,
//! in the task that awaited it. [`SqlCountLayer`] counts those events, attributing each to
//! every enclosing [`SqlCounter`] scope span. So counting is exact (not sampled) and
//! per-scope: two tests running servers side by side in one process never see each other's
//! statements. What counts is what sqlx logs: every query, plus the `COMMIT`/`ROLLBACK` of
//! an sqlx transaction; the `BEGIN` of `pool.begin()` does not count (sqlx queues it and
//! sends it with the transaction's first statement, without logging it).
//!
//! ```no_run
//! # async fn f(pool: sqlx::PgPool) {
//! let counter = labkit::SqlCounter::new();
//! counter.scope(async { sqlx::query("SELECT 1").execute(&pool).await.unwrap(); }).await;
//! assert_eq!(counter.get(), 1);
//! # }
//! ```
//!
//! Work moved to another task (`tokio::spawn`, DataLoader batches) must carry the span:
//! `tokio::spawn(fut.in_current_span())`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

pub(crate) const SCOPE_TARGET: &str = "labkit::sql_count";
const SCOPE_SPAN: &str = "sql_scope";
const SQLX_TARGET: &str = "sqlx::query";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> &'static Mutex<HashMap<u64, Arc<AtomicU64>>> {
    static REG: OnceLock<Mutex<HashMap<u64, Arc<AtomicU64>>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// A counter of SQL statements executed inside its scope(s). Cheap to clone; clones share
/// the count.
#[derive(Clone, Debug)]
pub struct SqlCounter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: u64,
    count: Arc<AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut reg) = registry().lock() {
            reg.remove(&self.id);
        }
    }
}

impl Default for SqlCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlCounter {
    /// A new counter at zero. Installs labkit's tracing subscriber if none is installed yet
    /// (counting needs it; see [`crate::telemetry::init`]).
    pub fn new() -> Self {
        crate::telemetry::init();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let count = Arc::new(AtomicU64::new(0));
        registry()
            .lock()
            .expect("sql counter registry")
            .insert(id, count.clone());
        Self {
            inner: Arc::new(Inner { id, count }),
        }
    }

    /// The span that marks "count statements in here". Enter it, or instrument a future.
    pub fn span(&self) -> Span {
        tracing::info_span!(target: SCOPE_TARGET, SCOPE_SPAN, labkit_sql_scope = self.inner.id)
    }

    /// Run `fut` inside this counter's scope.
    pub fn scope<F: Future>(&self, fut: F) -> Instrumented<F> {
        fut.instrument(self.span())
    }

    /// Statements counted so far.
    pub fn get(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Return the count and start again from zero.
    pub fn take(&self) -> u64 {
        self.inner.count.swap(0, Ordering::Relaxed)
    }

    /// Count every statement the router's handlers run (one scope per request, all adding
    /// to this counter). The way labs measure "SQL statements per request".
    pub fn count_router(&self, router: axum::Router) -> axum::Router {
        let counter = self.clone();
        router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let span = counter.span();
                async move { next.run(req).instrument(span).await }
            },
        ))
    }
}

struct ScopeCount(Arc<AtomicU64>);

/// The `tracing` layer behind [`SqlCounter`]; installed by [`crate::telemetry::init`].
pub struct SqlCountLayer;

impl SqlCountLayer {
    /// Only sqlx statement events and our scope spans are of interest.
    pub(crate) fn wants(meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == SQLX_TARGET || (meta.target() == SCOPE_TARGET && meta.name() == SCOPE_SPAN)
    }
}

impl<S> Layer<S> for SqlCountLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != SCOPE_SPAN {
            return;
        }
        struct IdVisitor(Option<u64>);
        impl Visit for IdVisitor {
            fn record_u64(&mut self, field: &Field, value: u64) {
                if field.name() == "labkit_sql_scope" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut v = IdVisitor(None);
        attrs.record(&mut v);
        let Some(scope_id) = v.0 else { return };
        let counter = registry()
            .lock()
            .ok()
            .and_then(|r| r.get(&scope_id).cloned());
        if let (Some(counter), Some(span)) = (counter, ctx.span(id)) {
            span.extensions_mut().insert(ScopeCount(counter));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != SQLX_TARGET {
            return;
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(c) = span.extensions().get::<ScopeCount>() {
                    c.0.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
