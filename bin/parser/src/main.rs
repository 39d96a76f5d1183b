//! parser: see `parser --help`.
use std::path::PathBuf;

use clap::Parser;

/// Index every line the taps read into the tantivy index under state_dir and republish it on parsed/<host>/<log>. Normally started by the supervisor.
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
    let _span = tracing::info_span!("parser").entered();
    let result = (|| {
        let cfg = rill_config::Config::load(&args.config)?;
        let shutdown = rill_process::Shutdown::on_signals()?;
        rill_parser::run(&cfg, &shutdown)
    })();
    rill_process::finish("parser", result.map_err(|e| format!("{e:#}")));
}
