//! `cargo run -p lab-rest-vs-graphql` runs this lab alone (default scale); every `lab` flag works:
//! `cargo run -p lab-rest-vs-graphql -- run --scale smoke --format json`.

fn main() -> std::process::ExitCode {
    labkit::cli::main(vec![Box::new(lab_rest_vs_graphql::RestVsGraphql)])
}
