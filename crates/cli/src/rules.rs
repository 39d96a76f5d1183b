//! `rill rules`: each rule with what it matched and how its firings went;
//! `history` of firings; `test` a rule over the index without firing.
//!
//! It reads the rules' store (`<state_dir>/rules/firings.log`) and the
//! index directly: it works with the collector stopped, and never writes.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use rill_config::Config;

use crate::emit;

/// Show each rule's matched lines and firings by status; `history` lists
/// firings newest first; `test RULE` shows what a rule would fire over the
/// index's recent lines, firing nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Firings, newest first.
    History {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this rule's.
        rule: Option<String>,
    },
    /// What RULE would fire over the lines since --since (default 1h).
    Test {
        rule: String,
        #[arg(long, default_value = "1h")]
        since: String,
    },
}

pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let file = args
        .config
        .as_ref()
        .ok_or_else(|| anyhow!("--config FILE is required"))?;
    let cfg = Config::load_for_client(file)?;
    match &args.sub {
        None => list(&cfg, args.json, out),
        Some(Sub::History { limit, rule }) => {
            history(&cfg, rule.as_deref(), *limit, args.json, out)
        }
        Some(Sub::Test { rule, since }) => test(&cfg, rule, since, args.json, out),
    }
}

fn known<'a>(cfg: &'a Config, rule: &str) -> anyhow::Result<&'a rill_config::rules::Rule> {
    cfg.rules.get(rule).ok_or_else(|| {
        let names: Vec<&str> = cfg.rules.keys().map(String::as_str).collect();
        anyhow!(
            "no rule {rule:?} in {}; rules: {}",
            cfg.file.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    })
}

fn list(cfg: &Config, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let rules = rill_rules::summary(cfg)?;
    if json {
        emit(out, &serde_json::to_string_pretty(&rules)?)?;
        return Ok(());
    }
    if rules.is_empty() {
        emit(out, &format!("no rules in {}", cfg.file.display()))?;
        return Ok(());
    }
    emit(
        out,
        &format!(
            "{:<20} {:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  LAST",
            "RULE", "KIND", "MATCHED", "PENDING", "RUNNING", "SUCCESS", "FAILURE", "TIMEOUT"
        ),
    )?;
    for r in &rules {
        let f = &r["firings"];
        let last = match &r["last"] {
            serde_json::Value::Null => "-".to_owned(),
            l => format!(
                "{} {} {}",
                l["fired_at"].as_str().unwrap_or_default(),
                l["status"].as_str().unwrap_or_default(),
                l["id"].as_str().unwrap_or_default()
            ),
        };
        let mut line = format!(
            "{:<20} {:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  {last}",
            r["rule"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["matched"],
            f["pending"],
            f["running"],
            f["success"],
            f["failure"],
            f["timeout"],
        );
        if r["queue_full"] == true {
            line.push_str("  (queue full: its lines wait)");
        }
        if let Some(e) = r["error"].as_str() {
            line.push_str(&format!("  (not run: {e})"));
        }
        if !emit(out, &line)? {
            break;
        }
    }
    Ok(())
}

fn history(
    cfg: &Config,
    rule: Option<&str>,
    limit: usize,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if let Some(r) = rule {
        known(cfg, r)?;
    }
    let store = rill_rules::read(&rill_rules::dir(cfg))?;
    for r in store.history(rule, limit) {
        let line = if json {
            serde_json::to_string(&r.json())?
        } else {
            let actions: Vec<String> = r
                .actions
                .iter()
                .map(|a| {
                    let detail = a.last.as_ref().map_or(String::new(), |o| {
                        match (o.exit_code, o.http_status, o.signal) {
                            (Some(c), _, _) => format!(" exit {c}"),
                            (_, Some(h), _) => format!(" http {h}"),
                            (_, _, Some(s)) => format!(" signal {s}"),
                            _ => String::new(),
                        }
                    });
                    format!(
                        "{}: {}{detail} ({} attempts)",
                        a.action,
                        a.state.name(),
                        a.attempts
                    )
                })
                .collect();
            format!(
                "{}  {}  {}  group={:?} count={}  {}  {}",
                r.firing
                    .fired_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.firing.rule,
                r.state().name(),
                r.firing.group,
                r.firing.count,
                r.firing.id,
                actions.join("; ")
            )
        };
        if !emit(out, &line)? {
            break;
        }
    }
    Ok(())
}

fn test(
    cfg: &Config,
    name: &str,
    since: &str,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let rule = known(cfg, name)?;
    if let Err(e) = rill_rules::check(name, rule) {
        bail!("{}: {e}", cfg.file.display());
    }
    let span = rill_index::time::parse_span(since)
        .ok_or_else(|| anyhow!("--since: expected a span like 15m, 1h or 7d, got {since:?}"))?;
    let from = chrono::Utc::now()
        .checked_sub_signed(span)
        .ok_or_else(|| anyhow!("--since: {since:?} reaches before any time"))?;
    let searcher = rill_index::IndexSearcher::open(&cfg.index_dir())
        .with_context(|| format!("could not open the index of {}", cfg.file.display()))?;
    let (matched, firings) = rill_rules::engine::test(&searcher, cfg, name, rule, from)?;
    if json {
        for f in &firings {
            if !emit(out, &serde_json::to_string(f)?)? {
                return Ok(());
            }
        }
        return Ok(());
    }
    emit(
        out,
        &format!(
            "rule {name} ({}) over the lines since {since}: {matched} matched, {} would fire (nothing fired)",
            rule.kind.name(),
            firings.len()
        ),
    )?;
    for f in &firings {
        let line = format!(
            "  would fire: group={:?} count={} id={} first match: {}",
            f.group,
            f.count,
            f.id,
            f.matches
                .first()
                .and_then(|m| m["body"].as_str())
                .unwrap_or("-")
        );
        if !emit(out, &line)? {
            break;
        }
    }
    Ok(())
}
