//! `lab`: list, run, serve and doctor every Backend Labs lab.
//!
//! ```text
//! cargo run --release -p lab -- list
//! cargo run --release -p lab -- run all
//! cargo run --release -p lab -- run seek-vs-scan --scale smoke --format json
//! cargo run --release -p lab -- doctor
//! ```
//!
//! The command line itself lives in `labkit::cli` so each lab's own `main.rs` shares it;
//! this binary only registers the labs.

fn main() -> std::process::ExitCode {
    labkit::cli::main(lab::labs())
}
