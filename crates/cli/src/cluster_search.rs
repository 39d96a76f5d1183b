//! `rill search` in a cluster: every live member's search API asked in
//! parallel and the answers merged ([`rill_cluster::search`]; the search
//! API does the same for the page).
//!
//! A member that does not answer within [`WITHIN`], or advertises no search
//! API, is named: `partial: [b]` on stderr (and in `--json` answers of
//! `--count` and `--histogram`); the others' answers are printed.
//!
//! A bearer token for the members' APIs comes from `RILL_SEARCH_TOKEN`
//! when it is set.

use std::io::Write;

use anyhow::anyhow;
use rill_cluster::search::{self as cluster, SearchError, MAX_ANSWER, WITHIN};
use rill_config::cluster::ClusterSettings;
use rill_index::IndexedLine;
use serde_json::{json, Value};

use crate::emit;
use crate::search::{render, Color, SearchArgs};

/// Asks every live member and prints the merged answer.
pub fn print(
    settings: &ClusterSettings,
    args: &SearchArgs,
    query: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut params: Vec<(String, String)> = vec![("q".into(), query.to_owned())];
    for (k, v) in [
        ("host", &args.host),
        ("log", &args.log),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(v) = v {
            params.push((k.into(), v.clone()));
        }
    }
    let path = if let Some(bucket) = &args.histogram {
        params.push(("bucket".into(), bucket.clone()));
        "histogram"
    } else if args.count {
        "count"
    } else {
        params.push(("limit".into(), args.limit.to_string()));
        if args.oldest_first {
            params.push(("order".into(), "oldest".into()));
        }
        params.push(("before".into(), args.lines_before().to_string()));
        params.push(("after".into(), args.lines_after().to_string()));
        "search"
    };
    let token = std::env::var("RILL_SEARCH_TOKEN").ok();
    let mut answers = match cluster::ask_members(
        settings,
        path,
        &params,
        token.as_deref(),
        (WITHIN, MAX_ANSWER),
    ) {
        Ok(a) => a,
        // A bad query: every member would say the same.
        Err(SearchError::Refused { answer, .. }) => {
            return Err(anyhow!("{}", cluster::why(&answer)))
        }
        Err(e) => return Err(e.into()),
    };
    for (member, why) in &answers.partial {
        eprintln!("rill search: member {member} did not answer: {why}");
    }
    let partial = answers.partial_names();
    if !partial.is_empty() {
        eprintln!("rill search: partial: [{}]", partial.join(", "));
    }
    if let Some(bucket) = &args.histogram {
        let sum = cluster::merge_buckets(&answers);
        let total: u64 = sum.values().sum();
        if args.json {
            let buckets: Vec<Value> = sum
                .iter()
                .map(|(start, count)| json!({"start": start, "count": count}))
                .collect();
            let v = json!({"query": query, "bucket": bucket, "total": total, "buckets": buckets, "partial": partial});
            emit(out, &v.to_string())?;
        } else {
            let buckets: Vec<rill_index::Bucket> = sum
                .iter()
                .filter_map(|(start, count)| {
                    Some(rill_index::Bucket {
                        start: start.parse().ok()?,
                        count: *count,
                    })
                })
                .collect();
            for line in crate::search::chart(&buckets, 50) {
                if !emit(out, &line)? {
                    break;
                }
            }
        }
        return Ok(());
    }
    if args.count {
        let n = cluster::merge_counts(&answers);
        let text = if args.json {
            json!({ "count": n, "partial": partial }).to_string()
        } else {
            n.to_string()
        };
        emit(out, &text)?;
        return Ok(());
    }
    let hits = cluster::merge_hits(&mut answers, args.limit as usize, args.oldest_first);
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let with_context = args.lines_before() + args.lines_after() > 0;
    for (i, v) in hits.iter().enumerate() {
        if args.json {
            if !emit(out, &v.to_string())? {
                return Ok(());
            }
            continue;
        }
        let line = |v: &Value| serde_json::from_value::<IndexedLine>(v.clone()).ok();
        let Some(hit) = line(v) else { continue };
        let ranges: Vec<std::ops::Range<usize>> = v["highlights"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some(r[0].as_u64()? as usize..r[1].as_u64()? as usize))
            .collect();
        let mut text = Vec::new();
        if with_context && i > 0 {
            text.push("--".to_owned());
        }
        let around = |key: &str| -> Vec<String> {
            v[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(line)
                .map(|l| render(&l, '-', &[], false))
                .collect()
        };
        text.extend(around("before"));
        text.push(render(&hit, ':', &ranges, color));
        text.extend(around("after"));
        for t in text {
            if !emit(out, &t)? {
                return Ok(());
            }
        }
    }
    Ok(())
}
