//! `cargo run -p lab-seek-vs-scan` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-seek-vs-scan -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_seek_vs_scan::SeekVsScan)])
}
