//! `cargo run -p lab-outbox-saga` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-outbox-saga -- run --scale smoke --format json`, and
//! `cargo run -p lab-outbox-saga -- serve --port 3000` starts the shop for curl:
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_outbox_saga::OutboxSaga)])
}
