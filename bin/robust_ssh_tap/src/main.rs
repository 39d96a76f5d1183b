//! robust_ssh_tap: keeps one ssh_tap alive for a host (or a group of hosts).
use std::path::PathBuf;

use clap::Parser;

/// Keep one ssh_tap running for a host: restart it with backoff, wait while
/// masspinger reports the host down. Normally started by the supervisor.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The Rill YAML config file.
    #[arg(long)]
    config: PathBuf,
    /// The host (a key under `hosts:` in the config); repeated for a group
    /// of hosts followed by one ssh_tap process.
    #[arg(long, required = true)]
    host: Vec<String>,
}

fn main() {
    let args = Args::parse();
    rill_process::private_files();
    rill_process::init_logging();
    let hosts = args.host.join(",");
    let _span = tracing::info_span!("robust_ssh_tap", host = %hosts).entered();
    let result = (|| {
        let cfg = rill_config::Config::load(&args.config)?;
        let shutdown = rill_process::Shutdown::on_signals()?;
        rill_tap::run_robust(&cfg, &args.host, &shutdown)
    })();
    rill_process::finish("robust_ssh_tap", result.map_err(|e| format!("{e:#}")));
}
