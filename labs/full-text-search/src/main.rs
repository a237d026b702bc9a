//! `cargo run -p lab-full-text-search` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-full-text-search -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_full_text_search::FullTextSearch)])
}
