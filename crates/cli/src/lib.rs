//! The `rill` command, one module per subcommand.
//!
//! Each module holds its subcommand's flags as a clap `Args` struct (its doc
//! comment is the subcommand's help) and a `run` that takes them, loads the
//! config and does the work; [`Command`] gathers them for the binary, which
//! parses the command line and hands each `Args` to its `run`.
//!
//! Output goes to stdout, one item per line; a closed pipe (`rill tail | head`)
//! ends the command successfully. Errors are returned to the binary, which
//! prints them once.

pub mod check;
mod cluster_search;
mod cluster_tail;
pub mod demo;
pub mod keygen;
pub mod rules;
pub mod search;
pub mod session;
pub mod status;
pub mod tail;

use std::io::{self, Write};

/// The subcommands of `rill`, each with its flags.
// Parsed once per run; boxing the big variant would only obscure clap's derive.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    CheckConfig(check::Args),
    Tail(tail::Args),
    Search(search::Args),
    Demo(demo::Args),
    Status(status::Args),
    Session(session::Args),
    Rules(rules::Args),
    Keygen(keygen::Args),
}

/// Writes one line to stdout; `Ok(false)` when the reader has gone away.
pub fn emit(out: &mut impl Write, line: &str) -> io::Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}
