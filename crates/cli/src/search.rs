//! `rill search`: the index, newest first.

use std::io::Write;

use rill_config::Config;
use rill_index::{IndexSearcher, IndexedLine, SearchRequest};
use serde_json::json;

use crate::emit;

pub struct SearchArgs {
    pub query: String,
    pub host: Option<String>,
    pub log: Option<String>,
    pub limit: usize,
    pub count: bool,
    pub json: bool,
}

pub fn run(cfg: &Config, args: &SearchArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let searcher = IndexSearcher::open(&cfg.index_dir())?;
    let req = SearchRequest {
        query: args.query.clone(),
        host: args.host.clone(),
        log: args.log.clone(),
        limit: args.limit,
    };
    if args.count {
        let n = searcher.count(&req)?;
        let text = if args.json {
            json!({ "count": n }).to_string()
        } else {
            n.to_string()
        };
        emit(out, &text)?;
        return Ok(());
    }
    for hit in searcher.search(&req)? {
        if !emit(out, &render(&hit, args.json))? {
            break;
        }
    }
    Ok(())
}

pub fn render(hit: &IndexedLine, as_json: bool) -> String {
    if as_json {
        json!({
            "ts": hit.ts, "host": hit.host, "log": hit.log, "body": hit.body,
            "offset": hit.offset, "file_id": hit.file_id,
        })
        .to_string()
    } else {
        format!(
            "{} {} {}: {}",
            hit.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            hit.host,
            hit.log,
            hit.body
        )
    }
}
