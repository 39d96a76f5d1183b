//! masspinger: see `masspinger --help`.
use std::path::PathBuf;

use clap::Parser;

/// Probe every configured host (TCP connect to its SSH port) and publish ping/<host>. Normally started by the supervisor.
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
    let _span = tracing::info_span!("masspinger").entered();
    let result = (|| {
        let cfg = rill_config::Config::load(&args.config)?;
        let shutdown = rill_process::Shutdown::on_signals()?;
        rill_pinger::run(&cfg, &shutdown)
    })();
    rill_process::finish("masspinger", result.map_err(|e| format!("{e:#}")));
}
