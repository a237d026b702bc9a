//! `cargo run -p lab-rate-limiter` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-rate-limiter -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_rate_limiter::RateLimiter)])
}
