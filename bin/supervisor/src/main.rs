//! supervisor: see `supervisor --help`.
use std::path::PathBuf;

use clap::Parser;

/// Run Rill from one YAML file: start masspinger, the parser and one robust_ssh_tap per host, restart them when they die, serve the streams endpoint and rill status. Stops the whole tree on SIGINT/SIGTERM.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The Rill YAML config file.
    #[arg(long)]
    config: PathBuf,
}

fn main() {
    let args = Args::parse();
    rill_process::private_files();
    rill_process::init_logging();
    let _span = tracing::info_span!("supervisor").entered();
    let result = (|| {
        let cfg = rill_config::Config::load(&args.config)?;
        let shutdown = rill_process::Shutdown::on_signals()?;
        rill_supervisor::run(&cfg, &shutdown)
    })();
    rill_process::finish("supervisor", result.map_err(|e| format!("{e:#}")));
}
