//! `cargo run -p lab-load-shedding` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-load-shedding -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_load_shedding::LoadShedding)])
}
