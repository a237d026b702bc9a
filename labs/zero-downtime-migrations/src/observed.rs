//! A migration, run while the app serves traffic and the lock queue is watched: the
//! shape every scenario shares.
//!
//! [`during_traffic`] starts three things on one clock and waits for all of them: the
//! app's open-loop traffic for the planned time, the scenario's migration (which times its
//! steps on that clock, e.g. "at 20 % of the phase"), and the lock watcher, which stops
//! once both are done. No task outlives the call: they are futures joined in place, so
//! dropping the run (Ctrl-C) drops them all.

use std::future::Future;
use std::time::{Duration, Instant};

use labkit::LabCtx;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::app::{App, Traffic};
use crate::lock_watch::{self, LockWatch, WATCHER};
use crate::migration::connect_as;
use crate::schema::Dataset;

/// What every scenario needs: the lab context, the app, and the load shape.
pub struct Stage<'a> {
    pub ctx: &'a LabCtx,
    pub app: App,
    /// Requests per second the app receives.
    pub rate: f64,
    /// Connections per app instance.
    pub connections: u32,
    pub data: Dataset,
}

/// The scenario's clock: time since it started, and instants as fractions of the planned
/// traffic ("issue the DDL at 20 %").
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    t0: Instant,
    pub planned: Duration,
}

impl Clock {
    pub fn start(planned: Duration) -> Self {
        Self {
            t0: Instant::now(),
            planned,
        }
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// `fraction` of the planned traffic, as a time on this clock.
    pub fn at(&self, fraction: f64) -> Duration {
        self.planned.mul_f64(fraction)
    }

    /// Sleep until `fraction` of the planned traffic has passed.
    pub async fn until(&self, fraction: f64) {
        tokio::time::sleep_until((self.t0 + self.at(fraction)).into()).await;
    }

    /// Planned traffic time left.
    pub fn remaining(&self) -> Duration {
        self.planned.saturating_sub(self.now())
    }
}

/// One scenario, observed.
#[derive(Debug, Clone)]
pub struct Observed<T> {
    pub label: String,
    /// The app traffic (one entry; two when two app versions serve).
    pub traffic: Vec<Traffic>,
    pub locks: LockWatch,
    /// What the migration returned.
    pub out: T,
    pub planned: Duration,
    /// When the migration finished, on the scenario clock.
    pub migration_done: Duration,
}

impl<T> Observed<T> {
    /// The app's traffic (the first app).
    pub fn app(&self) -> &Traffic {
        &self.traffic[0]
    }

    /// The migration outlasted the traffic (it ran past the traffic's cap): requests after
    /// that were not measured.
    pub fn migration_outlasted_traffic(&self) -> bool {
        self.traffic.iter().all(|t| self.migration_done > t.end)
    }

    /// When the last traffic of the phase ended.
    pub fn traffic_end(&self) -> Duration {
        self.traffic.iter().map(|t| t.end).max().unwrap_or_default()
    }
}

/// Run `migrate` while `stage.app` serves `label` traffic — for `planned`, and on until
/// the migration has finished (see [`App::traffic`]) — watching locks.
pub async fn during_traffic<T, F, Fut>(
    stage: &Stage<'_>,
    label: &str,
    planned: Duration,
    migrate: F,
) -> anyhow::Result<Observed<T>>
where
    F: FnOnce(Clock) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let app = stage.app.clone();
    let rate = stage.rate;
    let (done_tx, done_rx) = watch::channel(None);
    observe(
        stage.ctx,
        label,
        planned,
        vec![stage.app.pool.clone()],
        move |clock| async move {
            let (traffic, out) = tokio::join!(
                app.traffic(label, rate, clock.planned, &clock, Some(done_rx)),
                async {
                    let out = migrate(clock).await;
                    // Done (or failed): the traffic runs on for its tail, then stops.
                    let _ = done_tx.send(Some(clock.now()));
                    (out, clock.now())
                }
            );
            let (out, done) = out;
            Ok((vec![traffic], out?, done))
        },
    )
    .await
}

/// The general form: `body` runs the traffic and the migration itself (two app versions,
/// one starting late) and returns (traffic, result, when the migration finished).
pub async fn observe<T, F, Fut>(
    ctx: &LabCtx,
    label: &str,
    planned: Duration,
    pools: Vec<PgPool>,
    body: F,
) -> anyhow::Result<Observed<T>>
where
    F: FnOnce(Clock) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<Traffic>, T, Duration)>>,
{
    let watcher = connect_as(ctx, WATCHER).await?;
    let (stop, stopped) = watch::channel(false);
    let clock = Clock::start(planned);
    let work = async {
        let r = body(clock).await;
        let _ = stop.send(true);
        r
    };
    let (result, locks) =
        tokio::join!(work, lock_watch::watch(watcher, clock.t0(), stopped, pools));
    let (traffic, out, migration_done) = result?;
    Ok(Observed {
        label: label.to_string(),
        traffic,
        locks: locks?,
        out,
        planned,
        migration_done,
    })
}
