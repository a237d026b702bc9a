//! `cargo run -p lab-isolation-levels` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-isolation-levels -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_isolation_levels::IsolationLevels)])
}
