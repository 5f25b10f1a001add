//! The `chatrun` binary: parse the command line, run it, print the error chain.

use std::process::ExitCode;

fn main() -> ExitCode {
    match chatrun::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
