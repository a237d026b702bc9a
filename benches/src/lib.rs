//! Shared setup for the criterion benches: one bench target per lab in `benches/`.
//!
//! Benches resolve a backend exactly like the CLI and tests (`DATABASE_URL`/`REDIS_URL`, or
//! throwaway local servers) and get a scratch context. Run them with
//! `cargo bench -p benches --bench <lab-id>`.
//!
//! labkit's `docker` feature is off here on purpose: it would compile the Docker client
//! chain in release for every bench build (~3 min cold) and benches do not need it.

use labkit::testing::{TestCtx, ctx_with};
use labkit::{RunOptions, Scale};

/// A multi-threaded runtime for `b.to_async(&rt)`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A backend and scratch context for `lab_id` at `scale` (seed 42), created on `rt`.
pub fn ctx(rt: &tokio::runtime::Runtime, lab_id: &str, scale: Scale) -> TestCtx {
    rt.block_on(ctx_with(
        lab_id,
        RunOptions {
            scale,
            seed: 42,
            ..RunOptions::default()
        },
    ))
}
