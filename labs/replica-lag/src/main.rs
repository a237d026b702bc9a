//! `cargo run -p lab-replica-lag` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-replica-lag -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_replica_lag::ReplicaLag)])
}
