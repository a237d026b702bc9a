//! The replicas: real streaming hot standbys of the run's primary, from labkit
//! (`pg_basebackup -R` on the local backend, `REPLICA_URL` on env). Nothing is faked: where the
//! backend cannot give one, the scenario is skipped and the report says why.
//!
//! Two are started: one as streaming replication comes ("natural": its lag is whatever this
//! machine makes it), and one with `recovery_min_apply_delay` (a real setting, used for delayed
//! replicas that protect against a bad `DELETE`), so the anomaly is certain on a fast machine
//! rather than lucky. Reports label the second as delayed on purpose.

use std::time::{Duration, Instant};

use labkit::backend::{LocalPostgres, PostgresOptions};
use labkit::ctx::Replica;
use labkit::{ExtraError, LabCtx};
use sqlx::PgPool;

use crate::read_routing::{self, Lsn};

/// `cluster_name` of the standby without a delay; the primary's `pg_stat_replication` shows it
/// as `application_name` (the walreceiver uses `cluster_name` when `primary_conninfo` names none).
pub const NATURAL: &str = "replica_lag_natural";
/// `cluster_name` of the deliberately delayed standby.
pub const DELAYED: &str = "replica_lag_delayed";

/// A streaming standby and a pool on the scratch database there.
pub struct Standby {
    /// Its `application_name` in the primary's `pg_stat_replication`; `None` for a
    /// `REPLICA_URL` standby labkit did not start (then the primary's only row is used).
    pub application_name: Option<String>,
    /// "streaming replica" or "replica delayed 100 ms on purpose".
    pub label: String,
    /// `recovery_min_apply_delay`; zero for the natural one.
    pub apply_delay: Duration,
    pub pool: PgPool,
    /// From `ctx.replica(..)` until it streams.
    pub ready_in: Duration,
    /// labkit started it (`pg_basebackup -R`); false for `REPLICA_URL`.
    pub started_here: bool,
    replica: Replica,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("label", &self.label)
            .field("replica", &self.replica)
            .finish()
    }
}

/// Why a standby could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    /// This backend cannot give one (docker, env without `REPLICA_URL`): skip, say why.
    #[error("{0}")]
    Unavailable(String),
    /// It could have, and starting or reaching it failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Standby {
    /// The standby without a delay (`REPLICA_URL` on the env backend).
    pub async fn natural(ctx: &LabCtx) -> Result<Self, StandbyError> {
        Self::start(ctx, NATURAL, Duration::ZERO).await
    }

    /// A standby that applies each commit `apply_delay` after the primary made it. Only one
    /// labkit starts can be configured so: `REPLICA_URL`'s server keeps its own settings.
    pub async fn delayed(ctx: &LabCtx, apply_delay: Duration) -> Result<Self, StandbyError> {
        Self::start(ctx, DELAYED, apply_delay).await
    }

    async fn start(ctx: &LabCtx, name: &str, apply_delay: Duration) -> Result<Self, StandbyError> {
        let started = Instant::now();
        let mut opts = PostgresOptions::default()
            .set("cluster_name", name)
            // Standby status (and hot_standby_feedback) every second instead of every 10 s:
            // the primary's lag columns stay fresh and feedback arrives quickly.
            .set("wal_receiver_status_interval", "1s");
        if !apply_delay.is_zero() {
            opts = opts.set(
                "recovery_min_apply_delay",
                &format!("{}ms", apply_delay.as_millis()),
            );
        }
        let replica = match ctx.replica(&opts).await {
            Ok(r) => r,
            Err(ExtraError::Unavailable(why)) => return Err(StandbyError::Unavailable(why)),
            Err(ExtraError::Failed(e)) => return Err(StandbyError::Failed(e.into())),
        };
        if replica.server.is_none() && !apply_delay.is_zero() {
            return Err(StandbyError::Unavailable(
                "a deliberately delayed replica needs recovery_min_apply_delay on a standby \
                 labkit starts itself (--backend local); REPLICA_URL's standby keeps its own \
                 settings"
                    .into(),
            ));
        }
        let application_name = replica.server.is_some().then(|| name.to_string());
        let pool = connect_when_replayed(&replica.url).await?;
        let this = Self {
            application_name,
            label: if apply_delay.is_zero() {
                "streaming replica".into()
            } else {
                format!("replica delayed {} ms on purpose", apply_delay.as_millis())
            },
            apply_delay,
            pool,
            ready_in: Duration::ZERO,
            started_here: replica.server.is_some(),
            replica,
        };
        this.wait_streaming(&ctx.pg).await?;
        Ok(Self {
            ready_in: started.elapsed(),
            ..this
        })
    }

    /// The standby server, when labkit started it (settings can be reloaded on it).
    pub fn server(&mut self) -> Option<&mut LocalPostgres> {
        self.replica.server.as_mut()
    }

    /// The URL of the scratch database on the standby.
    pub fn url(&self) -> &str {
        &self.replica.url
    }

    /// Wait until the primary lists this standby as `streaming` (a standby accepts
    /// connections before its walreceiver has connected).
    async fn wait_streaming(&self, primary: &PgPool) -> anyhow::Result<()> {
        let Some(name) = &self.application_name else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            let streaming: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_replication \
                 WHERE application_name = $1 AND state = 'streaming')",
            )
            .bind(name)
            .fetch_one(primary)
            .await?;
            if streaming {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the standby {name} did not start streaming within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until the standby has replayed everything committed on `primary` so far.
    pub async fn catch_up(&self, primary: &PgPool) -> anyhow::Result<()> {
        catch_up(
            primary,
            &self.pool,
            self.apply_delay + Duration::from_secs(30),
        )
        .await
    }
}

/// A pool on the scratch database on the standby. On a `REPLICA_URL` standby the database
/// the run just created on the primary appears only once the standby has replayed its
/// creation: SQLSTATE 3D000 ("does not exist") until then.
async fn connect_when_replayed(url: &str) -> anyhow::Result<PgPool> {
    let started = Instant::now();
    loop {
        match labkit::pool_options(40).connect(url).await {
            Ok(pool) => return Ok(pool),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("3D000")
                    && started.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => anyhow::bail!("connecting to the replica: {e}"),
        }
    }
}

/// Wait until `standby` has replayed everything committed on `primary` so far.
pub async fn catch_up(primary: &PgPool, standby: &PgPool, timeout: Duration) -> anyhow::Result<()> {
    let target: Lsn = read_routing::lsn_after_commit(primary).await?;
    catch_up_to(primary, standby, &target, timeout).await
}

/// Wait until `standby` has replayed `target`. An idle primary writes no WAL, and its insert
/// position can sit just past a page header that the standby only passes with the next
/// record: after a second without getting there, one empty transaction on the primary gives
/// it that record.
pub async fn catch_up_to(
    primary: &PgPool,
    standby: &PgPool,
    target: &Lsn,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut nudged = Instant::now();
    while !read_routing::replayed(standby, target).await? {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the standby did not replay up to {} within {timeout:?}",
            target.0
        );
        if nudged.elapsed() > Duration::from_secs(1) {
            sqlx::query("SELECT pg_current_xact_id()")
                .execute(primary)
                .await?;
            nudged = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
