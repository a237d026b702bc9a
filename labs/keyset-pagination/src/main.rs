//! `cargo run -p lab-keyset-pagination` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-keyset-pagination -- run --scale smoke --format json`, and
//! `cargo run -p lab-keyset-pagination -- serve --port 3000` starts the orders API for curl:
//!
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_keyset_pagination::KeysetPagination)])
}
