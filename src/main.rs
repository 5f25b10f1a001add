//! The `chatrun` binary: parse the command line, run it, print the error chain.

use std::process::ExitCode;

/// glibc's allocator took a tenth of the CPU of an acknowledgement (many small, short-lived
/// allocations across threads); mimalloc takes a fraction of that.
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
