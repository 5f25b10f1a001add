//! The `chatrun` binary: parse the command line, run it, print the error chain.

use std::process::ExitCode;

/// An acknowledgement makes many small, short-lived allocations across threads, where glibc's
/// allocator showed in the profile and mimalloc much less (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match chatrun::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
