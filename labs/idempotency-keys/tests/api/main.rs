//! Integration tests: the real service and provider over real HTTP, on a real Postgres.
//! One binary, one module per part of the war story (zero2prod's layout).

mod concurrency;
mod contract;
mod expiry;
mod hard_edges;
mod helpers;
mod lab;
mod recovery;
mod webhooks;
