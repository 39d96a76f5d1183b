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

// Parsed once per run; boxing the big variant would only obscure clap's derive.
#[allow(clippy::large_enum_variant)]
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
    /// Search the index, newest first. QUERY: words (all must match), "phrases", AND/OR/NOT, -word, (groups), host:H, log:L, fields.status:500, parse_error:true; '*' matches all. See docs/search.md.
    Search {
        #[arg(long)]
        config: PathBuf,
        /// One JSON object per hit (with highlights, and before/after with -A/-B/-C).
        #[arg(long)]
        json: bool,
        /// Print only the number of matching events.
        #[arg(long)]
        count: bool,
        /// At most this many hits (1 to 1000000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        limit: u32,
        /// Only events from this host.
        #[arg(long)]
        host: Option<String>,
        /// Only events from this log.
        #[arg(long)]
        log: Option<String>,
        /// Only events at or after: 15m, 2h, 7d (ago) or RFC 3339 (2026-11-22T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only events before: 15m, 2h, 7d (ago) or RFC 3339.
        #[arg(long)]
        until: Option<String>,
        /// Oldest first instead of newest first.
        #[arg(long)]
        oldest_first: bool,
        /// N events of the same file before and after each hit.
        #[arg(short = 'C', long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=10_000))]
        context: Option<u16>,
        /// N events of the same file before each hit.
        #[arg(short = 'B', long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=10_000))]
        before: Option<u16>,
        /// N events of the same file after each hit.
        #[arg(short = 'A', long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=10_000))]
        after: Option<u16>,
        /// Match counts per time bucket (10s, 1m, 1h, 1d) as a bar chart (JSON with --json).
        #[arg(long, value_name = "BUCKET")]
        histogram: Option<String>,
        /// Highlight matched terms: auto (when stdout is a terminal), always, never.
        #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
        color: String,
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
    rill_process::private_files();
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
            since,
            until,
            oldest_first,
            context,
            before,
            after,
            histogram,
            color,
            query,
        } => {
            let cfg = Config::load_for_client(&config)?;
            let args = rill_cli::search::SearchArgs {
                query,
                host,
                log,
                since,
                until,
                oldest_first,
                limit: limit as usize,
                before: before.or(context).unwrap_or(0).into(),
                after: after.or(context).unwrap_or(0).into(),
                count,
                histogram,
                json,
                color: match color.as_str() {
                    "always" => rill_cli::search::Color::Always,
                    "never" => rill_cli::search::Color::Never,
                    _ => rill_cli::search::Color::Auto,
                },
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
