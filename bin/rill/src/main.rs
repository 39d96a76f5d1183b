//! rill: the command-line interface for operators, stream clients and engineers.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use rill_config::Config;

/// Rill: follow log files on many servers over SSH, stream them live, search their history.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file without starting anything.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print live lines. TOPIC accepts MQTT-style wildcards: line/+/nginx-access, line/web01/#.
    Tail {
        #[arg(long)]
        config: PathBuf,
        /// One JSON object per line (topic, host, log, body, offset, ...).
        #[arg(long)]
        json: bool,
        /// Topics to follow, e.g. line/web01/# (default: line/#).
        #[arg(value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Search the index, newest first. QUERY is tantivy query syntax over the line text; '*' matches all.
    Search {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        /// Print only the number of matching lines.
        #[arg(long)]
        count: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only lines from this host.
        #[arg(long)]
        host: Option<String>,
        /// Only lines from this log.
        #[arg(long)]
        log: Option<String>,
        #[arg(value_name = "QUERY")]
        query: String,
    },
    /// Run the demo: an embedded SSH host, generated logs and a supervisor following them.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Show each host's connection and each log's progress and errors.
    Status {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Drive a shell on a host through its session-control socket (docs/sessions.md).
    Session {
        #[arg(long)]
        config: PathBuf,
        /// The host (its config needs a `sessions` block).
        #[arg(long)]
        host: String,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
        /// PLAIN user when the socket needs a login; the password is read from
        /// $RILL_SESSION_PASSWORD (default: the credentials file's first user).
        #[arg(long)]
        user: Option<String>,
        #[command(subcommand)]
        action: SessionAction,
    },
}

#[derive(Subcommand)]
enum SessionAction {
    /// Open a session; prints its id and the endpoint publishing its output.
    Create,
    /// Write DATA to the session as given; escapes \n, \r, \t, \e, \\, \xHH are understood.
    Send { id: String, data: String },
    /// List open sessions (or one).
    Info { id: Option<String> },
    /// Close the session; its shell ends.
    Delete { id: String },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("rill: {e:#}");
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::CheckConfig { config } => {
            print!("{}", rill_cli::check::run(&config)?);
        }
        Command::Tail {
            config,
            json,
            mut topics,
        } => {
            let cfg = Config::load_for_client(&config)?;
            if topics.is_empty() {
                topics.push("line/#".into());
            }
            let shutdown = rill_process::Shutdown::on_signals()?;
            rill_cli::tail::run(&cfg, &topics, json, &mut out, &|| shutdown.requested())?;
        }
        Command::Search {
            config,
            json,
            count,
            limit,
            host,
            log,
            query,
        } => {
            let cfg = Config::load_for_client(&config)?;
            let args = rill_cli::search::SearchArgs {
                query,
                host,
                log,
                limit,
                count,
                json,
            };
            rill_cli::search::run(&cfg, &args, &mut out)?;
        }
        Command::Demo { duration } => {
            rill_cli::demo::run(duration.map(std::time::Duration::from_secs), &mut out)?;
        }
        Command::Status { config, json } => {
            let cfg = Config::load_for_client(&config)?;
            rill_cli::status::run(&cfg, json, &mut out)?;
        }
        Command::Session {
            config,
            host,
            json,
            user,
            action,
        } => {
            use rill_cli::session::Action;
            let cfg = Config::load_for_client(&config)?;
            let action = match action {
                SessionAction::Create => Action::Create,
                SessionAction::Send { id, data } => Action::Send {
                    session_id: id,
                    data,
                },
                SessionAction::Info { id } => Action::Info { session_id: id },
                SessionAction::Delete { id } => Action::Delete { session_id: id },
            };
            rill_cli::session::run(&cfg, &host, action, user.as_deref(), json, &mut out)?;
        }
    }
    Ok(())
}
