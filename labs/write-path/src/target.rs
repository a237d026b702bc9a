//! The Postgres the lab writes to: a server of its own with `fsync = on`.
//!
//! The run's throwaway cluster has `fsync` off (it is deleted at exit, and read-path labs do
//! not care). Here commit cost *is* the story, so on the local backend the lab starts a
//! dedicated server with `fsync = on` and `full_page_writes = on` — what production runs —
//! and may crash and restart it. Where the backend cannot start one (env, docker), the lab
//! writes to the run's own database with that server's settings and says which they were.

use std::time::Duration;

use labkit::backend::{LocalPostgres, PostgresOptions};
use labkit::{ExtraError, LabCtx};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::schema;

/// The database every scenario writes to.
pub struct Target {
    /// The dedicated server, when the backend could start one (the crash scenario needs it).
    pub server: Option<LocalPostgres>,
    /// Why there is no dedicated server (the report says it).
    pub fallback_reason: Option<String>,
    options: PgConnectOptions,
    /// The same database as a URL (for pgbench).
    pub url: String,
    /// The durability settings in force, as `SHOW` prints them.
    pub settings: Vec<(String, String)>,
}

/// The settings that decide what a commit costs; printed in the report.
const SETTINGS: [&str; 6] = [
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "commit_delay",
    "wal_writer_delay",
];

/// The name of the database the lab creates on its dedicated server.
const DB: &str = "write_path";

impl Target {
    /// A dedicated `fsync = on` server with the `events` table, or the run's database.
    pub async fn open(ctx: &LabCtx) -> anyhow::Result<Self> {
        let opts = PostgresOptions::default()
            .set("fsync", "on")
            .set("full_page_writes", "on");
        let (server, fallback_reason, url) = match ctx.dedicated_postgres(&opts).await {
            Ok(server) => {
                let admin: PgConnectOptions = server.url("postgres").parse()?;
                let mut conn = admin.connect().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DB}")))
                    .execute(&mut conn)
                    .await?;
                let _ = conn.close().await;
                // Over the server's Unix socket, not TCP: sqlx 0.9.0 does not set
                // TCP_NODELAY (sqlx#4335), and over loopback TCP a COPY's last small message
                // (CopyDone) waits out a 40 ms delayed ACK — a stall that is the driver's,
                // not the write path's. libpq (pgbench) sets it; a Unix socket has no Nagle.
                let dir = server
                    .dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                let url = format!(
                    "postgres://postgres@localhost/{DB}?host={dir}&port={}",
                    server.port
                );
                (Some(server), None, url)
            }
            Err(ExtraError::Unavailable(why)) => (None, Some(why), ctx.database_url().to_string()),
            Err(e) => return Err(e.into()),
        };
        let mut this = Self {
            server,
            fallback_reason,
            options: url.parse()?,
            url,
            settings: Vec::new(),
        };
        let mut conn = this.connect().await?;
        schema::setup(&mut conn).await?;
        for name in SETTINGS {
            let v: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
            this.settings.push((name.to_string(), v));
        }
        let _ = conn.close().await;
        Ok(this)
    }

    /// Connect options for this database (add `.options([("synchronous_commit", "off")])`).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    /// A pool of `n` connections, all opened before it is returned (a pool that connects on
    /// demand would charge connection setup to the first requests of a measured phase).
    pub async fn pool(&self, n: u32, options: PgConnectOptions) -> Result<PgPool, sqlx::Error> {
        let pool = labkit::pool_options(n).connect_lazy_with(options);
        let conns = futures::future::try_join_all((0..n).map(|_| pool.acquire())).await?;
        drop(conns);
        Ok(pool)
    }

    /// The value of a setting recorded at open (`"on"`, `"off"`, ...).
    pub fn setting(&self, name: &str) -> &str {
        self.settings
            .iter()
            .find(|(k, _)| k == name)
            .map_or("?", |(_, v)| v.as_str())
    }

    pub fn fsync_on(&self) -> bool {
        self.setting("fsync") == "on"
    }

    /// `fsync=on, synchronous_commit=on, ...` for notes.
    pub fn settings_line(&self) -> String {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Close `pool` and wait until its server processes are gone, so the statistics they
    /// kept (WAL flushes in `pg_stat_wal`) are flushed and the next phase starts clean.
    pub async fn close_pool(&self, pool: PgPool) -> Result<(), sqlx::Error> {
        pool.close().await;
        let mut conn = self.connect().await?;
        for _ in 0..200 {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND backend_type = 'client backend'
                   AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut conn)
            .await?;
            if others == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// WAL flushes (`fsync`/`fdatasync` calls) the server has made: `pg_stat_wal.wal_sync`.
    pub async fn wal_syncs(&self) -> Result<i64, sqlx::Error> {
        let mut conn = self.connect().await?;
        let n: i64 = sqlx::query_scalar("SELECT wal_sync FROM pg_stat_wal")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(n)
    }
}
