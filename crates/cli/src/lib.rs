//! The `rill` command, one module per subcommand.
//!
//! Output goes to stdout, one item per line; a closed pipe (`rill tail | head`)
//! ends the command successfully. Errors are returned to the binary, which
//! prints them once.

pub mod check;
pub mod demo;
pub mod search;
pub mod session;
pub mod status;
pub mod tail;

use std::io::{self, Write};

/// Writes one line to stdout; `Ok(false)` when the reader has gone away.
pub fn emit(out: &mut impl Write, line: &str) -> io::Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}
