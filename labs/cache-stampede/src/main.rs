//! `cargo run -p lab-cache-stampede` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-cache-stampede -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_cache_stampede::CacheStampede)])
}
