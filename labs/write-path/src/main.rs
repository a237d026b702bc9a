//! `cargo run -p lab-write-path` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-write-path -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_write_path::WritePath)])
}
