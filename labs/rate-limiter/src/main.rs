//! `cargo run -p lab-rate-limiter` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-rate-limiter -- run --scale smoke --format json`, and
//! `cargo run -p lab-rate-limiter -- serve --port 3000` starts the API for curl
//! (`RATE_LIMIT_ALGORITHM`, `RATE_LIMIT_POLICY`, `RATE_LIMIT_FAIL_MODE` configure it):
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_rate_limiter::RateLimiter)])
}
