//! `cargo run -p lab-retry-storm` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-retry-storm -- run --scale smoke --format json`, and
//! `cargo run -p lab-retry-storm -- serve --port 3000` starts the service for curl:
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_retry_storm::RetryStorm)])
}
