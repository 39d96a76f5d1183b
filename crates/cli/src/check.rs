//! `rill check-config`: validate without starting anything.

use std::path::PathBuf;

use rill_config::{Auth, Config};

/// Validate a config file without starting anything.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
}

/// A one-paragraph summary of a valid config.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let cfg = Config::load(&args.config)?;
    let mut out = format!(
        "{}: ok\n  state_dir: {}\n  streams: {}\n",
        cfg.file.display(),
        cfg.state_dir.display(),
        cfg.streams_endpoint
    );
    for h in cfg.hosts.values() {
        let auth = match &h.auth {
            Auth::Key { path, .. } => format!("key {}", path.display()),
            Auth::Password(_) => "password".into(),
            Auth::Agent => "ssh-agent".into(),
        };
        let logs: Vec<&str> = cfg.logs_for(&h.name).map(|l| l.name.as_str()).collect();
        out.push_str(&format!(
            "  host {}: {}@{}:{} ({auth}, known_hosts {}), logs: {}\n",
            h.name,
            h.user,
            h.address,
            h.port,
            h.known_hosts,
            logs.join(", ")
        ));
        if let Some(s) = &h.sessions {
            out.push_str(&format!(
                "  host {} sessions: {} (max {}, pool {}, max_request_age {:?}, allow [{}], login {})\n",
                h.name,
                s.endpoint,
                s.max,
                s.pool,
                s.max_request_age,
                s.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                if s.credentials_file.is_some() { "PLAIN" } else { "none" },
            ));
        }
    }
    for w in cfg.warnings() {
        out.push_str(&format!("warning: {w}\n"));
    }
    Ok(out)
}
