//! `rill search`: the index, newest first; counts, context lines,
//! histograms, highlighted terms. The query language is in
//! `docs/search.md` and [`rill_index::query`].

use std::io::Write;
use std::path::PathBuf;

use rill_config::Config;
use rill_index::highlight::mark;
use rill_index::{hit_json, Bucket, IndexError, IndexSearcher, IndexedLine, SearchRequest};
use serde_json::json;

use crate::emit;

/// Terminal highlighting of matched terms: `Auto` highlights when stdout is
/// a terminal. (The variants carry no doc comments: clap would print them
/// as the help of each value.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Color {
    #[default]
    Auto,
    Always,
    Never,
}

/// Search the index, newest first. QUERY: words (all must match), "phrases", AND/OR/NOT, -word, (groups), host:H, log:L, fields.status:500, parse_error:true; '*' matches all. See docs/search.md.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub search: SearchArgs,
}

/// What a search asks of the index and how its answer is printed: the
/// flags of `rill search` after `--config`, and what the demo asks.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SearchArgs {
    /// One JSON object per hit (with highlights, and before/after with -A/-B/-C).
    #[arg(long)]
    pub json: bool,
    /// Print only the number of matching events.
    #[arg(long)]
    pub count: bool,
    /// At most this many hits (1 to 1000000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub limit: u32,
    /// Only events from this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only events from this log.
    #[arg(long)]
    pub log: Option<String>,
    /// Only events at or after: 15m, 2h, 7d (ago) or RFC 3339 (2026-11-22T10:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before: 15m, 2h, 7d (ago) or RFC 3339.
    #[arg(long)]
    pub until: Option<String>,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub oldest_first: bool,
    /// N events of the same file before and after each hit.
    #[arg(short = 'C', long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=10_000))]
    pub context: Option<u16>,
    /// N events of the same file before each hit.
    #[arg(short = 'B', long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=10_000))]
    pub before: Option<u16>,
    /// N events of the same file after each hit.
    #[arg(short = 'A', long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=10_000))]
    pub after: Option<u16>,
    /// Match counts per time bucket (10s, 1m, 1h, 1d) as a bar chart (JSON with --json).
    #[arg(long, value_name = "BUCKET")]
    pub histogram: Option<String>,
    /// Highlight matched terms: auto (when stdout is a terminal), always, never.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// In a cluster: this collector's own index only, not every member's.
    #[arg(long)]
    pub local: bool,
    /// Run the saved query NAME (`queries:` in the config) instead of QUERY.
    #[arg(long, value_name = "NAME", conflicts_with = "query")]
    pub saved: Option<String>,
    #[arg(value_name = "QUERY", required_unless_present = "saved")]
    pub query: Option<String>,
}

impl SearchArgs {
    /// Events of the same file to print before each hit: `-B`, else `-C`.
    pub fn lines_before(&self) -> usize {
        self.before.or(self.context).unwrap_or(0).into()
    }

    /// Events of the same file to print after each hit: `-A`, else `-C`.
    pub fn lines_after(&self) -> usize {
        self.after.or(self.context).unwrap_or(0).into()
    }
}

const HIGHLIGHT: (&str, &str) = ("\x1b[1;31m", "\x1b[0m");

/// `rill search`: loads the config and prints the search's answer.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let cfg = Config::load_for_client(&args.config)?;
    print(&cfg, &args.search, out)
}

/// Prints what `args` asks of the index of `cfg`.
pub fn print(cfg: &Config, args: &SearchArgs, out: &mut impl Write) -> anyhow::Result<()> {
    // A wrong saved query's name is said before the index is looked at.
    let query = match (&args.saved, &args.query) {
        (Some(name), _) => cfg.queries.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = cfg.queries.keys().map(String::as_str).collect();
            anyhow::anyhow!(
                "--saved {name:?}: no such query in {}; saved queries: {}",
                cfg.file.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?,
        (None, Some(q)) => q.clone(),
        (None, None) => String::new(),
    };
    if let Some(cluster) = cfg.cluster.as_ref().filter(|_| !args.local) {
        return crate::cluster_search::print(cluster, args, &query, out);
    }
    let searcher = IndexSearcher::open(&cfg.index_dir())?;
    let now = chrono::Utc::now();
    let bound = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                rill_index::time::parse_bound(t, now).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
            })
            .transpose()
    };
    let req = SearchRequest {
        query,
        host: args.host.clone(),
        log: args.log.clone(),
        since: bound("--since", &args.since)?,
        until: bound("--until", &args.until)?,
        limit: args.limit as usize,
        oldest_first: args.oldest_first,
        deadline: Default::default(),
        commits: None,
        hosts_in: None,
        logs_in: None,
    };
    if let Some(bucket) = &args.histogram {
        let width = rill_index::time::parse_span(bucket).ok_or_else(|| {
            anyhow::anyhow!("--histogram: expected a bucket like 10s, 1m, 1h or 1d, got {bucket:?}")
        })?;
        let buckets = searcher.histogram(&req, width).map_err(query_error)?;
        let total: u64 = buckets.iter().map(|b| b.count).sum();
        if args.json {
            emit(
                out,
                &json!({ "query": req.query, "bucket": bucket, "total": total, "buckets": buckets })
                    .to_string(),
            )?;
        } else {
            for line in chart(&buckets, 50) {
                if !emit(out, &line)? {
                    break;
                }
            }
        }
        return Ok(());
    }
    if args.count {
        let n = searcher.count(&req).map_err(query_error)?;
        let text = if args.json {
            json!({ "count": n }).to_string()
        } else {
            n.to_string()
        };
        emit(out, &text)?;
        return Ok(());
    }
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let hits = searcher.search(&req).map_err(query_error)?;
    let mut hl = searcher.highlighter(&req)?;
    let (before, after) = (args.lines_before(), args.lines_after());
    let with_context = before + after > 0;
    for (i, hit) in hits.iter().enumerate() {
        let ranges = hl.ranges(&hit.body);
        let ctx = if with_context {
            Some(searcher.context(hit, before, after, usize::MAX, &Default::default())?)
        } else {
            None
        };
        let mut lines = Vec::new();
        if args.json {
            lines.push(hit_json(hit, &ranges, ctx.as_ref()).to_string());
        } else {
            if with_context && i > 0 {
                lines.push("--".to_owned());
            }
            let ctx = ctx.unwrap_or_default();
            lines.extend(ctx.before.iter().map(|l| render(l, '-', &[], false)));
            lines.push(render(hit, ':', &ranges, color));
            lines.extend(ctx.after.iter().map(|l| render(l, '-', &[], false)));
        }
        for line in lines {
            if !emit(out, &line)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A query error with the query and a caret under the position.
fn query_error(e: IndexError) -> anyhow::Error {
    match &e {
        IndexError::Query(q) => match q.pointer() {
            Some(p) => anyhow::anyhow!("{q}\n{p}"),
            None => anyhow::anyhow!("{q}"),
        },
        _ => e.into(),
    }
}

/// `TS HOST LOG: BODY` for a hit, `TS HOST LOG- BODY` for a context line
/// (as grep marks them).
pub fn render(
    hit: &IndexedLine,
    sep: char,
    ranges: &[std::ops::Range<usize>],
    color: bool,
) -> String {
    let body = if color {
        mark(&hit.body, ranges, HIGHLIGHT.0, HIGHLIGHT.1)
    } else {
        hit.body.clone()
    };
    format!(
        "{} {} {}{sep} {}",
        hit.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        hit.host,
        hit.log,
        body
    )
}

/// One line per bucket: start, a bar scaled to the largest bucket (eighth
/// blocks, so small counts still show), the count.
pub fn chart(buckets: &[Bucket], width: usize) -> Vec<String> {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let digits = max.to_string().len();
    buckets
        .iter()
        .map(|b| {
            let eighths = ((b.count as u128 * width as u128 * 8).div_ceil(max as u128)) as usize;
            let bar = format!("{}{}", "█".repeat(eighths / 8), EIGHTHS[eighths % 8]);
            let pad = width + 1 - bar.chars().count();
            format!(
                "{}  {bar}{}{:>digits$}",
                b.start.format("%Y-%m-%dT%H:%M:%SZ"),
                " ".repeat(pad),
                b.count
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn chart_scales_bars_and_keeps_small_counts_visible() {
        let b = |m: i64, count| Bucket {
            start: Utc.timestamp_opt(1_795_341_600 + 60 * m, 0).unwrap(),
            count,
        };
        let lines = chart(&[b(0, 100), b(1, 0), b(2, 1), b(3, 50)], 10);
        assert_eq!(lines[0], "2026-11-22T10:00:00Z  ██████████ 100");
        assert_eq!(lines[1], "2026-11-22T10:01:00Z               0");
        assert_eq!(lines[2], "2026-11-22T10:02:00Z  ▏            1");
        assert_eq!(lines[3], "2026-11-22T10:03:00Z  █████       50");
    }
}
