//! Integration tests for the rest-vs-graphql lab: real Postgres, real HTTP, exact SQL counts.
//! One test binary (modules below) so the crate links once.

mod helpers;
mod http_contract;
mod limits;
mod order;
mod run;
mod screen;
