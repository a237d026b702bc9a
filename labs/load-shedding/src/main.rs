//! `cargo run -p lab-load-shedding` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-load-shedding -- run --scale smoke --format json`.
//!
//! Serve it with `cargo run --release -p lab-load-shedding -- serve` (limits from the
//! `LOAD_SHEDDING_*` environment variables) and try:
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_load_shedding::LoadShedding)])
}
