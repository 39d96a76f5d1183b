//! `rill check-config`: validate without starting anything.

use std::path::PathBuf;

use rill_config::{Auth, Config};

/// Validate a config file without starting anything.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
}

/// Every saved query parses, or the first that does not, named by its key
/// with its position (the config crate has no query parser).
pub fn check_queries(cfg: &Config) -> anyhow::Result<()> {
    for (name, text) in &cfg.queries {
        if let Err(e) = rill_index::query::check_text(text) {
            let at = e
                .position
                .map(|p| format!(" at position {p}"))
                .unwrap_or_default();
            anyhow::bail!(
                "{}: queries.{name}: expected {}{at}\n{}",
                cfg.file.display(),
                e.expected,
                e.pointer().unwrap_or_default()
            );
        }
    }
    for (name, rule) in &cfg.rules {
        if rule.query.saved.is_none() {
            if let Err(e) = rill_rules::check(name, rule) {
                anyhow::bail!("{}: {e}", cfg.file.display());
            }
        }
    }
    Ok(())
}

/// A one-paragraph summary of a valid config.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let cfg = Config::load(&args.config)?;
    check_queries(&cfg)?;
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
    if !cfg.queries.is_empty() {
        let names: Vec<&str> = cfg.queries.keys().map(String::as_str).collect();
        out.push_str(&format!("  saved queries: {}\n", names.join(", ")));
    }
    for (name, rule) in &cfg.rules {
        out.push_str(&format!(
            "  rule {name}: {} on {:?}, {} action(s)\n",
            rule.kind.name(),
            rule.query.text,
            rule.actions.len()
        ));
    }
    for w in cfg.warnings() {
        out.push_str(&format!("warning: {w}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_configs_saved_queries_parse() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/rill.yaml");
        let cfg = Config::load_for_client(&path).unwrap();
        assert!(!cfg.queries.is_empty());
        check_queries(&cfg).unwrap();
    }
}
