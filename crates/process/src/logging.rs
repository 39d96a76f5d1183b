//! The log subscriber that binaries install: stderr, filtered by `RUST_LOG`.

/// Logs to stderr, level from `RUST_LOG` (default `info`). Only binaries call this.
pub fn init_logging() {
    use std::io::IsTerminal;
    // tantivy logs every commit at info; keep its warnings only.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
