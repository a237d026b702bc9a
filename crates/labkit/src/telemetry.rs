//! Logging to stderr (`RUST_LOG`, default `warn,sqlx=error`) plus the statement-counting layer.
//!
//! stdout is reserved for reports (`--format json` prints the JSON document and nothing
//! else), so everything here writes to stderr.

use std::sync::Once;

use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::prelude::*;

use crate::sql_count::SqlCountLayer;

/// Install labkit's global subscriber once. Safe to call from every test and from main.
/// If the process already installed another subscriber, SQL counting will read zero:
/// labkit warns about that on stderr.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // sqlx warns about every "slow statement" (> 1 s) and "slow acquire" (> 2 s); labs
        // cause both on purpose (seq scans, deep OFFSETs, stampedes), so by default they are
        // noise. Errors still reach the caller as values. `RUST_LOG=sqlx=warn` brings them back.
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,sqlx=error"));
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(true)
            .with_filter(filter);
        // Its own filter, so the user's RUST_LOG never hides statements from the counter.
        let counter = SqlCountLayer.with_filter(filter_fn(SqlCountLayer::wants));
        if tracing_subscriber::registry()
            .with(fmt)
            .with(counter)
            .try_init()
            .is_err()
        {
            eprintln!(
                "labkit: another tracing subscriber is installed; SQL statement counts will read 0"
            );
        }
    });
}
