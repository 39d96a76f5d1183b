//! How a daemon ends: its error printed once and an exit status.

/// Ends a daemon: prints the error once (`name: error: ...`) and exits 2,
/// as `rill` does (a bad config, a socket that cannot be bound, ...).
pub fn finish(name: &str, result: Result<(), String>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            eprintln!("{name}: error: {e}");
            std::process::exit(2)
        }
    }
}
