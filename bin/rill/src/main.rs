//! rill: the command-line interface for operators, stream clients and engineers.
//!
//! Parses the command line and hands each subcommand's flags to its `run` in
//! rill-cli, which defines them; prints an error once and exits 2.

use clap::Parser;
use rill_cli::{check, demo, keygen, rules, search, session, status, tail, Command};

/// Rill: follow log files on many servers over SSH, stream them live, search their history.
// The top-level parser lives in this package so that `--version` names it.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() {
    let cli = Cli::parse();
    rill_process::private_files();
    if let Err(e) = run(cli.command) {
        eprintln!("rill: {e:#}");
        std::process::exit(2);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        Command::CheckConfig(args) => print!("{}", check::run(&args)?),
        Command::Tail(args) => tail::run(args, &mut out)?,
        Command::Search(args) => search::run(&args, &mut out)?,
        Command::Demo(args) => demo::run(&args, &mut out)?,
        Command::Status(args) => status::run(&args, &mut out)?,
        Command::Session(args) => session::run(args, &mut out)?,
        Command::Rules(args) => rules::run(&args, &mut out)?,
        Command::Keygen(args) => keygen::run(&args, &mut out)?,
    }
    Ok(())
}
