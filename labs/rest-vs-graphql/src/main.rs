//! `cargo run -p lab-rest-vs-graphql` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-rest-vs-graphql -- run --scale smoke --format json`, and
//! `cargo run -p lab-rest-vs-graphql -- serve --port 3000` serves the REST and GraphQL app for curl:
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_rest_vs_graphql::RestVsGraphql)])
}
