//! `vecstream`: one binary for every part of the pipeline and its operations.

fn main() -> std::process::ExitCode {
    vecstream::main_with(vecstream::Hooks::default())
}
