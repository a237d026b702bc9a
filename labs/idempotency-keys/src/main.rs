//! `cargo run -p lab-idempotency-keys` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-idempotency-keys -- run --scale smoke --format json`, and
//! `cargo run -p lab-idempotency-keys -- serve --port 3000` starts the payments service for curl:
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_idempotency_keys::IdempotencyKeys)])
}
