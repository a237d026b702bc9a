//! `cargo run -p lab-write-path` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-write-path -- run --scale smoke --format json`, and
//! `cargo run -p lab-write-path -- serve --port 3000` serves the ingestion API:
#![doc = include_str!("../curl.md")]

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_write_path::WritePath)])
}
