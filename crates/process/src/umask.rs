//! The file mode mask that keeps what Rill writes to its own user.

/// Files and folders this process creates are its user's alone (0600,
/// 0700): the index holds every line of every log, the state dir host keys
/// and offsets. Every binary calls it first.
pub fn private_files() {
    // SAFETY: umask(2) only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
}
