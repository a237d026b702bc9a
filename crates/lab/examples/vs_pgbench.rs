//! Is the harness what it measures? labkit side by side with pgbench, on one server.
//!
//! ```text
//! cargo run --release -p lab --example vs_pgbench            # or scripts/compare-with-pgbench.sh
//! ```
//!
//! Starts a throwaway Postgres (the local backend, as `lab run` does) and, interleaved, three
//! pairs of each:
//!
//! - **Seeding**: seek-vs-scan's invoices through `labkit::seed::generate` against
//!   `pgbench -i -I dtG` (server-side generation of pgbench_accounts), in rows/s and heap MB/s
//!   (table size after the load over the insert time).
//! - **Query latency**: seek-vs-scan's covering-index query at 4 clients through the lab's own
//!   load function and pool, against `pgbench -M simple` running the same SQL with the same
//!   tenant distribution (uniform over the tenants, so pgbench can draw it with `random()`),
//!   p50 and p95 from per-transaction logs.
//!
//! Numbers from a busy machine mean little: run it with nothing else running.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab_seek_vs_scan::schema::{self, Dataset};
use labkit::{Backends, LabCtx, RunOptions, Scale};

const CLIENTS: usize = 4;
const PAIRS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let backends = Backends::resolve(labkit::BackendChoice::Local).await?;
    let pg = backends
        .local_postgres()
        .expect("the local backend has a local Postgres");
    let port = pg.port.to_string();
    let ctx = LabCtx::new(&backends, "vs-pgbench", RunOptions::default()).await?;
    let data = Dataset::for_scale(Scale::Default);
    let bin = pg_bin();

    println!("# Seeding: labkit::seed vs pgbench -i -I dtG (server-side), same server");
    println!("| run | tool | rows | seconds | rows/s | heap MB/s |\n|---|---|---:|---:|---:|---:|");
    let mut seed_ratio = Vec::new();
    for pair in 1..=PAIRS {
        sqlx::raw_sql("DROP TABLE IF EXISTS invoices")
            .execute(&ctx.pg)
            .await?;
        let loaded = schema::load(&ctx.pg, data, 42).await?;
        let heap: i64 = sqlx::query_scalar("SELECT pg_relation_size('invoices')")
            .fetch_one(&ctx.pg)
            .await?;
        let lab_mb_s = heap as f64 / 1e6 / loaded.insert.elapsed.as_secs_f64();
        println!(
            "| {pair} | labkit | {} | {:.2} | {:.0} | {:.1} |",
            loaded.insert.rows,
            loaded.insert.elapsed.as_secs_f64(),
            loaded.insert.rows_per_s,
            lab_mb_s
        );
        let t0 = Instant::now();
        let out = Command::new(bin.join("pgbench"))
            .args([
                "-i",
                "-I",
                "dtG",
                "-s",
                "20",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ])
            .args(["-U", "postgres", ctx.database_name()])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secs_pgbench = t0.elapsed().as_secs_f64();
        let heap: i64 = sqlx::query_scalar("SELECT pg_relation_size('pgbench_accounts')")
            .fetch_one(&ctx.pg)
            .await?;
        let pgb_mb_s = heap as f64 / 1e6 / secs_pgbench;
        println!(
            "| {pair} | pgbench | 2000000 | {secs_pgbench:.2} | {:.0} | {pgb_mb_s:.1} |",
            2_000_000.0 / secs_pgbench
        );
        seed_ratio.push(lab_mb_s / pgb_mb_s);
    }
    println!(
        "\nlabkit / pgbench heap MB/s: {}\n",
        seed_ratio
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The covering index after VACUUM: the variant whose latency the lab quotes.
    // Built exactly as the lab builds it (VACUUM cannot share a multi-statement string: it
    // refuses to run inside the implicit transaction such a string runs in).
    lab_seek_vs_scan::variants::apply(
        &ctx.pg,
        lab_seek_vs_scan::variants::Variant::CoveringAfterVacuum,
    )
    .await?;
    let pool = ctx
        .new_pool_with(
            labkit::pool_options(CLIENTS as u32).min_connections(CLIENTS as u32),
            ctx.connect_options()
                .options([("plan_cache_mode", "force_custom_plan")]),
        )
        .await?;
    let now = schema::reference_now().to_rfc3339();
    let sql = lab_seek_vs_scan::query::RECENT_INVOICES
        .replace("$1", ":t")
        .replace("$2::timestamptz", &format!("'{now}'::timestamptz"));
    let script = std::env::temp_dir().join(format!("vs-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!("\\set t random(1, {})\n{};\n", data.tenants, sql.trim()),
    )?;
    let mut mix: Vec<i64> = (1..=data.tenants as i64).collect();
    // A fixed shuffle: uniform over tenants, like pgbench's random().
    let mut x: u64 = 42;
    for i in (1..mix.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        mix.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mix = Arc::new(mix);
    println!("# Query: seek-vs-scan covering index, {CLIENTS} clients, {secs} s, uniform tenants");
    println!("| run | tool | queries/s | p50 ms | p95 ms |\n|---|---|---:|---:|---:|");
    let mut p50_ratio = Vec::new();
    let mut p95_ratio = Vec::new();
    for pair in 1..=PAIRS {
        let logdir = tempfile::tempdir()?;
        let out = Command::new(bin.join("pgbench"))
            .args(["-M", "simple", "-n", "-c", &CLIENTS.to_string(), "-j", "2"])
            .args(["-T", &secs.to_string(), "-f"])
            .arg(&script)
            .args(["--log", "--log-prefix"])
            .arg(logdir.path().join("pgb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                ctx.database_name(),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pgbench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (n, p50, p95) = pgbench_percentiles(logdir.path())?;
        println!(
            "| {pair} | pgbench -M simple | {:.0} | {p50:.3} | {p95:.3} |",
            n as f64 / secs as f64
        );
        let lab =
            lab_seek_vs_scan::load::run(&pool, mix.clone(), CLIENTS, Duration::from_secs(secs))
                .await;
        println!(
            "| {pair} | labkit (sqlx, prepared) | {:.0} | {:.3} | {:.3} |",
            lab.throughput_per_s, lab.p50_ms, lab.p95_ms
        );
        p50_ratio.push(lab.p50_ms / p50);
        p95_ratio.push(lab.p95_ms / p95);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\nlabkit / pgbench p50: {}; p95: {}",
        show(&p50_ratio),
        show(&p95_ratio)
    );
    let _ = std::fs::remove_file(&script);
    pool.close().await;
    ctx.finish().await;
    Ok(())
}

fn pg_bin() -> std::path::PathBuf {
    labkit::backend::local::LocalBins::find()
        .map(|b| b.pg_bin_dir)
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
}

/// Transactions, p50 and p95 (ms) from pgbench's per-transaction logs (3rd column: µs).
fn pgbench_percentiles(dir: &std::path::Path) -> anyhow::Result<(u64, f64, f64)> {
    let mut rec = labkit::Recorder::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                rec.record(Duration::from_micros(us));
            }
        }
    }
    let s = rec.summary(Duration::from_secs(1));
    Ok((s.count, s.p50_ms, s.p95_ms))
}
