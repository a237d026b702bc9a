//! The bench database: a lab's data seeded once, kept between bench runs, copied per run.
//!
//! Named `bench_<lab>_<scale>_s<seed>_v<version>`, so a different scale, seed or data
//! version is a different database; building one drops the other versions of the same lab
//! and scale (stale). It is built in an ordinary labkit scratch database that is renamed only
//! once the seed has finished, so an interrupted seed leaves nothing that looks complete.
//! It then refuses connections (`ALLOW_CONNECTIONS false`): nothing, autovacuum included,
//! touches it but `CREATE DATABASE … TEMPLATE`, which copies it into each run's scratch
//! database. A bench may therefore drop indexes, VACUUM or insert as it likes, and the next
//! run starts from exactly the seeded state (visibility map and hint bits included).
//!
//! `BENCH_FRESH=1` (or `all`, or a comma-separated list of lab ids) rebuilds it. Concurrent
//! benches on one server serialise on an advisory lock per bench database.

use std::time::Instant;

use anyhow::Context;
use labkit::testing::TestCtx;
use labkit::{Backends, LabCtx, RunOptions, Scale};
use sqlx::{Connection, PgConnection};

/// `bench_<lab>_<scale>_s<seed>_v<version>` (a Postgres identifier: [a-z0-9_], ≤ 63 bytes).
pub fn name(lab_id: &str, scale: Scale, seed: u64, version: u32) -> String {
    format!("{}_{scale}_s{seed}_v{version}", prefix(lab_id))
}

fn prefix(lab_id: &str) -> String {
    let slug = lab_id
        .to_ascii_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    format!("bench_{}", &slug[..slug.len().min(32)])
}

/// Whether `BENCH_FRESH` asks to rebuild `lab_id`'s bench database.
pub fn fresh_requested(lab_id: &str) -> bool {
    match std::env::var("BENCH_FRESH") {
        Ok(v) => {
            let v = v.trim();
            matches!(v, "1" | "true" | "yes" | "all") || v.split(',').any(|id| id.trim() == lab_id)
        }
        Err(_) => false,
    }
}

/// A scratch context holding a fresh copy of the bench database (built first if needed),
/// and a sentence saying where the data came from.
pub async fn open<F>(
    backends: Backends,
    lab_id: &str,
    opts: RunOptions,
    version: u32,
    seed: F,
) -> anyhow::Result<(TestCtx, String)>
where
    F: AsyncFnOnce(&LabCtx) -> anyhow::Result<()>,
{
    let name = name(lab_id, opts.scale, opts.seed, version);
    let mut admin = PgConnection::connect(&backends.admin_url).await?;
    // One builder per bench database; the lock is held through the copy, so a concurrent
    // BENCH_FRESH cannot drop the template under it.
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&name)
        .execute(&mut admin)
        .await?;
    let mut exists = database_exists(&mut admin, &name).await?;
    if exists && fresh_requested(lab_id) {
        eprintln!("bench data: BENCH_FRESH: dropping {name}");
        drop_database(&mut admin, &name).await?;
        exists = false;
    }
    if !exists {
        build(&backends, &mut admin, lab_id, opts, &name, seed).await?;
    }
    let about: String = sqlx::query_scalar(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') || '; size=' \
                || pg_size_pretty(pg_database_size(datname)) \
         FROM pg_database WHERE datname = $1",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await?;

    let t0 = Instant::now();
    let mut ctx = LabCtx::new(&backends, lab_id, opts).await?;
    copy_into(&mut admin, &mut ctx, &name).await?;
    let _ = admin.close().await;
    let built = field(&about, "built").unwrap_or("?");
    let seeded_s = field(&about, "seeded_s").unwrap_or("?");
    let size = field(&about, "size").unwrap_or("?");
    eprintln!(
        "bench data: {name} ({size}, seeded in {seeded_s} s at {built} UTC{}) copied into {} in \
         {:.1} s; BENCH_FRESH=1 re-seeds",
        if exists { ", reused" } else { ", just now" },
        ctx.database_name(),
        t0.elapsed().as_secs_f64()
    );
    let where_ = format!("data: a copy of {name} (seeded once at {built} UTC, kept between runs)");
    Ok((TestCtx { ctx, backends }, where_))
}

/// Seed into a labkit scratch database, then rename it into place and close it.
async fn build<F>(
    backends: &Backends,
    admin: &mut PgConnection,
    lab_id: &str,
    opts: RunOptions,
    name: &str,
    seed: F,
) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&LabCtx) -> anyhow::Result<()>,
{
    eprintln!(
        "bench data: seeding {name} ({lab_id} at {} scale); once — later runs reuse it",
        opts.scale
    );
    let t0 = Instant::now();
    let ctx = LabCtx::new(backends, lab_id, opts).await?;
    seed(&ctx)
        .await
        .with_context(|| format!("seeding {lab_id}"))?;
    let scratch = ctx.database_name().to_string();
    ctx.pg.close().await;
    end_sessions(admin, &scratch).await?;
    execute(admin, format!("ALTER DATABASE {scratch} RENAME TO {name}")).await?;
    let built: String =
        sqlx::query_scalar("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')")
            .fetch_one(&mut *admin)
            .await?;
    let comment = format!(
        "bench cache; lab={lab_id}; scale={}; seed={}; seeded_s={:.0}; built={built}",
        opts.scale,
        opts.seed,
        t0.elapsed().as_secs_f64()
    );
    execute(admin, format!("COMMENT ON DATABASE {name} IS '{comment}'")).await?;
    execute(
        admin,
        format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
    )
    .await?;
    // Other versions or seeds of this lab at this scale are stale now.
    let others: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) AND datname <> $2",
    )
    .bind(format!("{}_{}_s", prefix(lab_id), opts.scale))
    .bind(name)
    .fetch_all(&mut *admin)
    .await?;
    for other in others {
        eprintln!("bench data: dropping stale {other}");
        drop_database(admin, &other).await?;
    }
    // A short crash recovery if a later bench is killed.
    execute(admin, "CHECKPOINT".to_string()).await?;
    ctx.finish().await; // its scratch database is the bench database now: nothing to drop
    Ok(())
}

/// Replace the context's (empty) scratch database with a copy of `template`, keeping its
/// name and owner mark, so the context's URL, pools and clean-up work unchanged.
async fn copy_into(
    admin: &mut PgConnection,
    ctx: &mut LabCtx,
    template: &str,
) -> anyhow::Result<()> {
    let db = ctx.database_name().to_string();
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(&db)
    .fetch_one(&mut *admin)
    .await?;
    ctx.pg.close().await;
    end_sessions(admin, &db).await?;
    execute(admin, format!("DROP DATABASE {db}")).await?;
    // FILE_COPY copies the files (a checkpoint, then cp) instead of WAL-logging every block
    // of the template; PostgreSQL < 15 has no STRATEGY and always copies files.
    let copy = format!("CREATE DATABASE {db} TEMPLATE {template} STRATEGY FILE_COPY");
    if let Err(e) = execute(admin, copy).await {
        let syntax = e
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .is_some_and(|d| d.code().as_deref() == Some("42601"));
        if !syntax {
            return Err(e);
        }
        execute(admin, format!("CREATE DATABASE {db} TEMPLATE {template}")).await?;
    }
    if let Some(owner) = owner {
        let owner = owner.replace('\'', "''");
        execute(admin, format!("COMMENT ON DATABASE {db} IS '{owner}'")).await?;
    }
    ctx.pg = labkit::pool_options(32)
        .connect_with(ctx.connect_options())
        .await?;
    Ok(())
}

async fn database_exists(admin: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(admin)
            .await?,
    )
}

async fn drop_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    execute(
        admin,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
}

async fn end_sessions(admin: &mut PgConnection, db: &str) -> anyhow::Result<()> {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db)
    .execute(admin)
    .await?;
    Ok(())
}

/// A utility statement on an identifier we built from [a-z0-9_] (no parameters possible).
async fn execute(admin: &mut PgConnection, sql: String) -> anyhow::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(admin)
        .await
        .map(|_| ())
        .map_err(anyhow::Error::from)
}

fn field<'a>(comment: &'a str, key: &str) -> Option<&'a str> {
    comment
        .split("; ")
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}
