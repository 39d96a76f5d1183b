//! Where the other Rill binaries are.

use std::path::PathBuf;

/// The path of Rill binary `name`: `$RILL_BIN_DIR/name` if set, else next to
/// the running executable.
pub fn sibling(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("RILL_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}
