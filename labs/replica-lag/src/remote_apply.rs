//! Fix (c): `synchronous_commit = remote_apply`. COMMIT returns only once the synchronous
//! standby has *applied* the commit, so a read there right after it sees it; the cost moves
//! to every write (a round trip to the standby plus its replay; with `recovery_min_apply_delay`
//! on that standby, the delay too — the Postgres docs warn about exactly that).
//!
//! It needs `synchronous_standby_names` on the primary, a server-wide setting, and the run's
//! primary is shared with the other labs in `lab run all`. So the lab does not touch it: on
//! the local backend it starts a primary of its own with the setting and a standby of that
//! primary (both stopped and deleted with [`SyncPair`], Ctrl-C included). On the env backend
//! it runs only when the user's primary already names synchronous standbys (then remote_apply
//! is a per-session choice); otherwise the scenario is skipped and the report says why.

use std::time::{Duration, Instant};

use labkit::backend::{LocalPostgres, PostgresOptions};
use labkit::{ExtraError, LabCtx};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::read_routing::Db;
use crate::schema;
use crate::standby::{self, Standby, StandbyError};

/// `cluster_name` of the synchronous standby (and so its name in `synchronous_standby_names`).
pub const SYNC_STANDBY: &str = "replica_lag_sync";

/// A primary with a synchronous standby, and two ways to write to it.
pub struct SyncPair {
    /// Writes with `synchronous_commit = local`: COMMIT waits for the primary's own WAL only.
    pub local: Db,
    /// Writes with `synchronous_commit = remote_apply`.
    pub remote_apply: Db,
    /// Where the pair came from, for the report.
    pub origin: String,
    /// The lab's own primary and standby (local backend); stopped and deleted on drop.
    servers: Option<(LocalPostgres, LocalPostgres)>,
}

impl std::fmt::Debug for SyncPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPair")
            .field("origin", &self.origin)
            .field("own_servers", &self.servers.is_some())
            .finish()
    }
}

impl SyncPair {
    /// A primary of the lab's own with a synchronous standby applying `apply_delay` late
    /// (zero for the run), seeded with `users` profiles; or, on env, the user's primary and
    /// `natural` when the primary already names synchronous standbys.
    pub async fn start(
        ctx: &LabCtx,
        natural: Option<&Standby>,
        users: u64,
        apply_delay: Duration,
    ) -> Result<Self, StandbyError> {
        let opts = PostgresOptions::default().set("synchronous_standby_names", SYNC_STANDBY);
        match ctx.dedicated_postgres(&opts).await {
            Ok(primary) => own_pair(ctx, primary, users, apply_delay)
                .await
                .map_err(StandbyError::Failed),
            Err(ExtraError::Failed(e)) => Err(StandbyError::Failed(e.into())),
            Err(ExtraError::Unavailable(why)) => users_sync_standbys(ctx, natural, &why).await,
        }
    }

    /// The standby's server, when the lab started it.
    pub fn standby_server(&mut self) -> Option<&mut LocalPostgres> {
        self.servers.as_mut().map(|(_, s)| s)
    }
}

async fn own_pair(
    ctx: &LabCtx,
    primary: LocalPostgres,
    users: u64,
    apply_delay: Duration,
) -> anyhow::Result<SyncPair> {
    let mut opts = PostgresOptions::default()
        .set("cluster_name", SYNC_STANDBY)
        .set("wal_receiver_status_interval", "1s");
    if !apply_delay.is_zero() {
        opts = opts.set(
            "recovery_min_apply_delay",
            &format!("{}ms", apply_delay.as_millis()),
        );
    }
    let standby_server = primary.standby(&opts).await?;
    let base: PgConnectOptions = primary.url("postgres").parse()?;
    let pool = |commit: &'static str, n: u32| {
        labkit::pool_options(n).connect_with(base.clone().options([("synchronous_commit", commit)]))
    };
    let local = pool("local", 40).await?;
    wait_sync(&local).await?;
    // Seeding with synchronous_commit = local: no reason to wait for the standby row by row.
    schema::create_profiles(&local, users, ctx.seed).await?;
    let replica = labkit::pool_options(40)
        .connect(&standby_server.url("postgres"))
        .await?;
    standby::catch_up(&local, &replica, apply_delay + Duration::from_secs(30)).await?;
    Ok(SyncPair {
        remote_apply: Db::new(
            "sync pair, remote_apply",
            &pool("remote_apply", 40).await?,
            &replica,
        ),
        local: Db::new("sync pair, local commit", &local, &replica),
        origin: format!(
            "the lab's own primary (synchronous_standby_names = '{SYNC_STANDBY}') and its \
             standby, both local"
        ),
        servers: Some((primary, standby_server)),
    })
}

/// Wait until the primary counts the standby as synchronous.
async fn wait_sync(primary: &PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let sync: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_replication \
             WHERE application_name = $1 AND sync_state = 'sync')",
        )
        .bind(SYNC_STANDBY)
        .fetch_one(primary)
        .await?;
        if sync {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the standby did not become synchronous within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The env backend: remote_apply per session, only if the user's primary already has
/// synchronous standbys. The lab never changes `synchronous_standby_names` on a server it
/// does not own.
async fn users_sync_standbys(
    ctx: &LabCtx,
    natural: Option<&Standby>,
    no_own_primary: &str,
) -> Result<SyncPair, StandbyError> {
    let Some(natural) = natural else {
        return Err(StandbyError::Unavailable(no_own_primary.to_string()));
    };
    let names: String = sqlx::query_scalar("SELECT current_setting('synchronous_standby_names')")
        .fetch_one(&ctx.pg)
        .await
        .map_err(|e| StandbyError::Failed(e.into()))?;
    if names.trim().is_empty() {
        return Err(StandbyError::Unavailable(
            "remote_apply needs synchronous_standby_names on the primary; this one has none, \
             and the lab does not change it on a server it does not own (run with --backend \
             local, where it starts a primary of its own, or name REPLICA_URL's standby in \
             synchronous_standby_names yourself)"
                .into(),
        ));
    }
    let pool = |commit: &'static str| {
        labkit::pool_options(40).connect_with(
            ctx.connect_options()
                .options([("synchronous_commit", commit)]),
        )
    };
    let connect = async {
        Ok::<_, sqlx::Error>(SyncPair {
            local: Db::new(
                "sync pair, local commit",
                &pool("local").await?,
                &natural.pool,
            ),
            remote_apply: Db::new(
                "sync pair, remote_apply",
                &pool("remote_apply").await?,
                &natural.pool,
            ),
            origin: format!(
                "your primary (synchronous_standby_names = '{names}') and REPLICA_URL; \
                 remote_apply makes reads there fresh only if REPLICA_URL is one of those"
            ),
            servers: None,
        })
    };
    connect.await.map_err(|e| StandbyError::Failed(e.into()))
}
