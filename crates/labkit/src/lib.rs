//! # labkit — the harness every Backend Labs lab stands on
//!
//! A lab reproduces one backend war story on real Postgres and Redis and reports the numbers
//! an engineer would quote. labkit does everything that is not the story itself:
//!
//! | module | what it does |
//! |---|---|
//! | [`backend`] | where Postgres and Redis come from: `env` URLs, `docker` (testcontainers) or `local` throwaway servers |
//! | [`ctx`] | a run's scratch database and Redis key prefix, scale, seed and environment |
//! | [`lab`] | the [`Lab`] trait and [`lab::run_lab`], the one path CLI, mains and tests share |
//! | [`measure`] | HDR-histogram latency summaries, closed-loop and open-loop load drivers |
//! | [`progress`] | progress bars and load-phase timers on stderr (`--no-progress`, `NO_COLOR`) |
//! | [`redis_info`] | Redis `INFO`, parsed |
//! | [`sql_count`] | exact SQL statement counts for a section of code or a router |
//! | [`explain`] | `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` parsed into node types, buffers, heap fetches |
//! | [`seed`] | fast, deterministic, server-side seeding with progress bars |
//! | [`report`], [`chart`] | findings with stable keys; text, Markdown, JSON and SVG renderings |
//! | [`http`] | serve a router on a real socket (`lab serve`, tests) and a loopback client |
//! | [`cli`] | the `lab` command line, shared with each lab's own `main.rs` |
//! | [`compare`] | `lab compare A B`: two runs finding by finding, with direction and environment checks |
//! | [`html`] | one self-contained `index.html` for a run |
//! | [`testing`] | a backend + scratch context per test, resolved like the CLI resolves it |
//! | [`telemetry`] | stderr logging (`RUST_LOG`) plus the statement-counting layer |

pub mod backend;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod ctx;
pub mod explain;
pub mod html;
pub mod http;
pub mod lab;
pub mod measure;
pub mod progress;
pub mod redis_info;
pub mod report;
pub mod seed;
pub mod sql_count;
pub mod telemetry;
pub mod testing;

pub use backend::{BackendChoice, BackendKind, Backends};
pub use ctx::{ExtraError, Knob, LabCtx, LoadKnobs, RunOptions, Scale, pool_options};
pub use lab::{Lab, RunOutcome, ServeApp, run_lab};
pub use measure::{
    Bound, ClosedLoop, LatencySummary, LoadResult, OpenLoop, Recorder, Sample, closed_loop,
    open_loop,
};
pub use report::{Better, Chart, Report, Table};
pub use sql_count::SqlCounter;

/// Re-exported so labs name the same versions the harness uses.
pub use async_trait::async_trait;
