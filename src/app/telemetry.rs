//! Logging: human-readable lines on stderr, filtered by `RUST_LOG` (default: chatrun at info).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; a second call (tests) does nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("chatrun=info,tower_http=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
