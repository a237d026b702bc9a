//! Integration tests for the rest-vs-graphql lab: real Postgres, real HTTP, exact SQL counts.
//! One test binary (modules below) so the crate links once.
//!
//! `#[tokio::test]` runs each test on one thread: a DataLoader batch task cannot run while
//! the request task is registering a level's keys, and for lists of up to 30 items
//! async-graphql registers a whole level in one pass, so the per-level count is exact at
//! N <= 30 (see `dataloader.rs` for why longer lists can split; the lab run measures that).

mod helpers;
mod http_contract;
mod limits;
mod run;
mod screen;
