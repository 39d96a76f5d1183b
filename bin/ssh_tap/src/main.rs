//! ssh_tap: follows every configured log of one host over one SSH connection.
use std::path::PathBuf;

use clap::Parser;

/// Follow every configured log of one host over SSH and publish each line on
/// line/<host>/<log>. Normally started by robust_ssh_tap, not by hand.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The Rill YAML config file.
    #[arg(long)]
    config: PathBuf,
    /// The host (a key under `hosts:` in the config); repeated, each host
    /// is followed on a thread of its own that restarts by itself.
    #[arg(long, required = true)]
    host: Vec<String>,
}

fn main() {
    let args = Args::parse();
    rill_process::private_files();
    rill_process::init_logging();
    let hosts = args.host.join(",");
    let _span = tracing::info_span!("ssh_tap", host = %hosts).entered();
    let result = (|| {
        let cfg = rill_config::Config::load(&args.config)?;
        let shutdown = rill_process::Shutdown::on_signals()?;
        rill_tap::run_taps(&cfg, &args.host, &shutdown)
    })();
    rill_process::finish("ssh_tap", result.map_err(|e| format!("{e:#}")));
}
