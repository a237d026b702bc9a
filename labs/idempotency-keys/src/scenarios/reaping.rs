//! Step 7: the reaper on a table of expired and live keys.

use std::time::Instant;

use super::Stage;
use crate::reaper;

pub struct Reaped {
    pub expired_seeded: u64,
    pub live_seeded: u64,
    pub deleted: u64,
    pub live_left: i64,
    pub ms: f64,
}

/// Odd rows expired an hour ago, even rows expire in 23 hours.
const SEED_KEYS: &str = "
INSERT INTO idempotency_keys (caller, key, fingerprint, recovery_point, response_status,
                              response_body, created_at, expires_at)
SELECT 'seeded-caller', 'seeded-' || g, decode(md5(g::text || $3::text), 'hex'), 'finished',
       201, '{}'::bytea,
       now() - interval '1 hour' - CASE WHEN g % 2 = 1 THEN interval '24 hours' ELSE interval '0' END,
       now() + CASE WHEN g % 2 = 1 THEN interval '-1 hour' ELSE interval '23 hours' END
FROM generate_series($1::bigint, $2::bigint) g";

pub async fn reap(stage: &Stage<'_>) -> anyhow::Result<Reaped> {
    let pool = stage.pool();
    let n = stage.ctx.scale.pick(2_000u64, 100_000, 1_000_000);
    labkit::seed::generate(pool, "keys", n, stage.ctx.seed, SEED_KEYS, |q| q).await?;
    sqlx::query("ANALYZE idempotency_keys")
        .execute(pool)
        .await?;
    let t0 = Instant::now();
    let deleted = reaper::reap_expired(pool, chrono::Utc::now(), 1000).await?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let live_left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE caller = 'seeded-caller'")
            .fetch_one(pool)
            .await?;
    Ok(Reaped {
        expired_seeded: n.div_ceil(2),
        live_seeded: n / 2,
        deleted,
        live_left,
        ms,
    })
}
