//! The anchor: `pgbench` running the same single-row INSERT against the same server.
//!
//! If this lab's single-row rate were far from pgbench's, the lab (the driver, the client
//! library) would be measuring itself. pgbench is Postgres' own load generator, written in
//! C over libpq; its custom-script mode (`-f`) runs one autocommit INSERT per transaction,
//! like the lab's single-row method.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// The pgbench script: the lab's row shape, one autocommit INSERT per transaction. Ids are
/// random UUIDs (pgbench cannot easily make the lab's ordered ones); on a table this small
/// the primary key stays in memory either way.
const SCRIPT: &str = r#"\set n random(1, 1000000000)
INSERT INTO events (event_id, device_id, kind, value, payload, created_at)
VALUES (gen_random_uuid(), :n % 5000, 'click', 12.5,
        '{"session":"5f0e3c1a9b7d2e4f","path":"/p/123","ua":"Mozilla/5.0 (X11; Linux x86_64)"}',
        now());
"#;

#[derive(Debug, thiserror::Error)]
pub enum PgbenchError {
    #[error("pgbench was not found on PATH or beside initdb")]
    NotFound,
    #[error("pgbench failed: {0}")]
    Failed(String),
}

/// One pgbench run.
#[derive(Debug, Clone)]
pub struct PgbenchRun {
    pub clients: u32,
    pub transactions: u64,
    /// Transactions (= rows) per second, as pgbench prints it.
    pub tps: f64,
    /// The command, for the README and the report.
    pub command: String,
}

fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("pgbench"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        labkit::backend::local::LocalBins::find()
            .ok()
            .map(|b| b.pg_bin_dir.join("pgbench"))
            .filter(|p| p.is_file())
    })
}

/// `pgbench -n -f - -c <clients> -T <seconds> <url>` with [`SCRIPT`] on stdin.
pub async fn single_row_inserts(
    url: &str,
    clients: u32,
    duration: std::time::Duration,
) -> Result<PgbenchRun, PgbenchError> {
    let bin = find().ok_or(PgbenchError::NotFound)?;
    let threads = clients.min(2);
    let args = [
        "-n".to_string(),
        "-f".into(),
        "-".into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        threads.to_string(),
        "-T".into(),
        // pgbench takes whole seconds.
        duration.as_secs_f64().round().max(1.0).to_string(),
    ];
    let mut child = tokio::process::Command::new(&bin)
        .args(&args)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PgbenchError::Failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(SCRIPT.as_bytes())
            .await
            .map_err(|e| PgbenchError::Failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| PgbenchError::Failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(PgbenchError::Failed(
            stderr.lines().last().unwrap_or("no output").to_string(),
        ));
    }
    // "tps = 1234.567890 (without initial connection time)"
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| PgbenchError::Failed(format!("no tps line in: {stdout}")))?;
    let transactions = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|r| r.split(['/', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(PgbenchRun {
        clients,
        transactions,
        tps,
        command: format!("pgbench {} <database>", args.join(" ")),
    })
}
