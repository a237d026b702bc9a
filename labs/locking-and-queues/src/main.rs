//! `cargo run -p lab-locking-and-queues` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-locking-and-queues -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_locking_and_queues::LockingAndQueues)])
}
