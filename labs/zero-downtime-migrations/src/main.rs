//! `cargo run -p lab-zero-downtime-migrations` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-zero-downtime-migrations -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(
        lab_zero_downtime_migrations::ZeroDowntimeMigrations,
    )])
}
