//! Per-iteration isolation: every timed operation starts from the same state.
//!
//! Use with criterion's `iter_custom`, which lets the bench time only the operation:
//!
//! ```ignore
//! group.bench_function("volatile-default", |b| {
//!     b.to_async(&rt).iter_custom(|iters| {
//!         benches::iters::each_after(iters, &|_| fresh_copy(&pool), &|_| alter(&pool))
//!     })
//! });
//! ```

use std::time::{Duration, Instant};

/// Run `setup(i)` untimed, then time `op(i)`, `iters` times; the sum of the timed parts.
/// For state a single operation changes (a table it rewrites, a key it fills).
pub async fn each_after<S, O>(iters: u64, setup: &S, op: &O) -> Duration
where
    S: AsyncFn(u64),
    O: AsyncFn(u64),
{
    let mut total = Duration::ZERO;
    for i in 0..iters {
        setup(i).await;
        let t0 = Instant::now();
        op(i).await;
        total += t0.elapsed();
    }
    total
}

/// Time `op(i)` `iters` times, then run `reset()` untimed once: what a sample of operations
/// added (rows, keys) is removed before the next sample, so the tables a bench writes to
/// stay the size they were seeded at instead of growing with every iteration.
pub async fn then_reset<O, R>(iters: u64, op: &O, reset: &R) -> Duration
where
    O: AsyncFn(u64),
    R: AsyncFn(),
{
    let t0 = Instant::now();
    for i in 0..iters {
        op(i).await;
    }
    let took = t0.elapsed();
    reset().await;
    took
}
