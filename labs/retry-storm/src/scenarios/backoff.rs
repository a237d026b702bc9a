//! Scenario 1 — backoff and jitter, the AWS experiment run for real: for each strategy and
//! each N, N clients race to update one Postgres row ([`crate::occ`]); the ported simulator
//! ([`crate::simulator`]) runs the same grid at the blog's parameters and at ours.

use std::time::Duration;

use labkit::LabCtx;
use labkit::measure::{LatencySummary, Recorder};

use crate::jitter::Strategy;
use crate::occ::{self, RaceConfig};
use crate::simulator::{SimParams, SimResult, simulate};

/// One (strategy, N) cell, averaged over its repetitions.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub strategy: Strategy,
    pub clients: usize,
    pub calls: f64,
    pub time_ms: f64,
    pub reps: u32,
}

#[derive(Debug, Clone)]
pub struct BackoffResults {
    pub cfg: RaceConfig,
    pub clients: Vec<usize>,
    /// The real races on Postgres.
    pub real: Vec<Cell>,
    /// The simulator at the blog's parameters, and at the lab's compressed ones.
    pub sim_aws: Vec<Cell>,
    pub sim_compressed: Vec<Cell>,
    pub sim_runs: u32,
    /// Latency of the SQL statements themselves, all races together.
    pub sql: LatencySummary,
    /// Races whose row did not end at version N (a lost update): must be 0.
    pub lost_updates: u64,
}

impl BackoffResults {
    pub fn largest(&self) -> usize {
        self.clients.last().copied().unwrap_or(0)
    }

    pub fn cell(cells: &[Cell], s: Strategy, n: usize) -> Option<&Cell> {
        cells.iter().find(|c| c.strategy == s && c.clients == n)
    }
}

/// N = max/5, 2·max/5 … max clients (10 … 50 by default), `reps` races per cell.
pub async fn run(ctx: &LabCtx, max_clients: usize, reps: u32) -> anyhow::Result<BackoffResults> {
    let cfg = RaceConfig::COMPRESSED;
    let clients: Vec<usize> = (1..=5)
        .map(|i| (max_clients * i / 5).max(2))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // One connection per client: waiting for a pooled connection would add a queue the
    // experiment does not have.
    let pool = ctx.new_pool(max_clients as u32 + 1).await?;
    occ::setup(&pool).await?;
    let mut real = Vec::new();
    let mut sql = Recorder::new();
    let mut lost_updates = 0;
    for &n in &clients {
        for strategy in Strategy::ALL {
            let (mut calls, mut time_ms) = (0.0, 0.0);
            for rep in 0..reps {
                let seed = ctx.seed ^ ((n as u64) << 32) ^ ((strategy as u64) << 16) ^ rep as u64;
                let out = occ::race(&pool, n, strategy, cfg, seed).await?;
                calls += out.calls as f64;
                time_ms += out.time.as_secs_f64() * 1000.0;
                sql.merge(&out.sql);
                if out.final_version != n as i64 {
                    lost_updates += 1;
                }
            }
            real.push(Cell {
                strategy,
                clients: n,
                calls: calls / f64::from(reps),
                time_ms: time_ms / f64::from(reps),
                reps,
            });
        }
    }
    pool.close().await;

    let sim_runs = 100;
    let grid = |p: SimParams| -> Vec<Cell> {
        let mut cells = Vec::new();
        for &n in &clients {
            for strategy in Strategy::ALL {
                let SimResult { calls, time_ms } =
                    simulate(n, strategy, &p, sim_runs, ctx.seed ^ n as u64);
                cells.push(Cell {
                    strategy,
                    clients: n,
                    calls,
                    time_ms,
                    reps: sim_runs,
                });
            }
        }
        cells
    };
    let sim_aws = grid(SimParams::AWS);
    let sim_compressed = grid(cfg.sim_params());
    Ok(BackoffResults {
        cfg,
        clients: clients.clone(),
        real,
        sim_aws,
        sim_compressed,
        sim_runs,
        sql: sql.summary(Duration::from_secs(1)),
        lost_updates,
    })
}
