//! The tables: users' profiles (the story), a table the stepped write load appends to, and
//! the rows a long report on the replica reads while the primary cleans them up.

use labkit::LabCtx;
use sqlx::PgPool;

/// The story's table: one row per user, `version` counts their saves.
pub const PROFILES_SQL: &str = r#"
CREATE TABLE profiles (
    user_id      bigint      PRIMARY KEY,
    display_name text        NOT NULL,
    version      bigint      NOT NULL DEFAULT 0,  -- +1 per save: "did this read see my save?"
    updated_at   timestamptz NOT NULL DEFAULT now()
);
"#;

/// The stepped write load's table and the long report's rows.
pub const LOAD_AND_REPORT_SQL: &str = r#"
CREATE TABLE write_load (
    id      bigserial PRIMARY KEY,
    payload text      NOT NULL
);

-- autovacuum off: the lab decides when VACUUM runs. vacuum_truncate off: truncating empty
-- pages at the end of the table takes an ACCESS EXCLUSIVE lock, and that lock replayed on the
-- standby cancels readers *even with hot_standby_feedback* (a lock conflict, not a snapshot
-- one). The story is the snapshot conflict, so the lab rules the lock one out.
CREATE TABLE report_rows (
    id           bigint PRIMARY KEY,
    amount_cents bigint NOT NULL
) WITH (autovacuum_enabled = off, vacuum_truncate = off);
"#;

/// How many rows each table starts with.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub profiles: u64,
    pub report_rows: u64,
}

/// Create the tables on the primary and seed them (server-side, deterministic for a seed);
/// the replicas get them through WAL like everything else.
pub async fn load(ctx: &LabCtx, sizes: Sizes) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(LOAD_AND_REPORT_SQL).execute(&ctx.pg).await?;
    create_profiles(&ctx.pg, sizes.profiles, ctx.seed).await?;
    labkit::seed::generate(
        &ctx.pg,
        "report_rows",
        sizes.report_rows,
        ctx.seed,
        "INSERT INTO report_rows (id, amount_cents) \
         SELECT g, 100 + floor(labkit_uniform(g, $3, 1) * 100000)::bigint \
         FROM generate_series($1::bigint, $2::bigint) g",
        |q| q,
    )
    .await?;
    sqlx::raw_sql("ANALYZE profiles; ANALYZE report_rows")
        .execute(&ctx.pg)
        .await?;
    Ok(())
}

/// `profiles` with `users` rows at version 0 (also on the remote_apply scenario's own primary).
pub async fn create_profiles(pool: &PgPool, users: u64, seed: u64) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(PROFILES_SQL).execute(pool).await?;
    labkit::seed::generate(
        pool,
        "profiles",
        users,
        seed,
        "INSERT INTO profiles (user_id, display_name) \
         SELECT g, 'user ' || g FROM generate_series($1::bigint, $2::bigint) g",
        |q| q,
    )
    .await?;
    Ok(())
}
