//! `rill search` in a cluster: every live member's search API
//! (`advertise.search`, from etcd) asked in parallel, the answers merged.
//!
//! - Hits: each member's newest (or oldest) `limit`, merged in time order;
//!   a line two members hold (a handover overlap) is shown once, by its
//!   identity (host, log, file, offset).
//! - `--count` and `--histogram`: the members' numbers summed. A handover
//!   overlap is counted once per member holding it (docs/cluster.md).
//! - A member that does not answer within [`WITHIN`], or advertises no
//!   search API, is named: `partial: [b]` on stderr (and in `--json`
//!   answers of `--count` and `--histogram`); the others' answers are
//!   printed.
//!
//! A bearer token for the members' APIs comes from `RILL_SEARCH_TOKEN`
//! when it is set.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use rill_config::cluster::ClusterSettings;
use rill_index::IndexedLine;
use serde_json::{json, Value};

use crate::emit;
use crate::search::{render, Color, SearchArgs};

/// How long a member has to answer.
pub const WITHIN: Duration = Duration::from_secs(30);

/// Asks every live member and prints the merged answer.
pub fn print(
    cluster: &ClusterSettings,
    args: &SearchArgs,
    query: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let members = rill_cluster::member::live_members(cluster)
        .map_err(|e| anyhow!("cluster {}: cannot read its members: {e}", cluster.name))?;
    let mut params: Vec<(&str, String)> = vec![("q", query.to_owned())];
    for (k, v) in [
        ("host", &args.host),
        ("log", &args.log),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(v) = v {
            params.push((k, v.clone()));
        }
    }
    let path = if let Some(bucket) = &args.histogram {
        params.push(("bucket", bucket.clone()));
        "histogram"
    } else if args.count {
        "count"
    } else {
        params.push(("limit", args.limit.to_string()));
        if args.oldest_first {
            params.push(("order", "oldest".into()));
        }
        params.push(("before", args.lines_before().to_string()));
        params.push(("after", args.lines_after().to_string()));
        "search"
    };
    let token = std::env::var("RILL_SEARCH_TOKEN").ok();
    let answers: Vec<(String, Result<Value, Failed>)> = std::thread::scope(|s| {
        let asks: Vec<_> = members
            .iter()
            .map(|m| {
                let (params, token) = (&params, token.as_deref());
                s.spawn(move || {
                    let answer = match &m.search {
                        Some(url) => ask(url, path, params, token),
                        None => Err(Failed::Down("advertises no search API".into())),
                    };
                    (m.member.clone(), answer)
                })
            })
            .collect();
        asks.into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| ("?".into(), Err(Failed::Down("panicked".into()))))
            })
            .collect()
    });
    let mut partial = Vec::new();
    let mut ok = Vec::new();
    for (member, a) in answers {
        match a {
            Ok(v) => ok.push(v),
            // The request itself is wrong (a bad query): every member
            // would say so.
            Err(Failed::Refused(why)) => return Err(anyhow!("{why}")),
            Err(Failed::Down(why)) => {
                eprintln!("rill search: member {member} did not answer: {why}");
                partial.push(member);
            }
        }
    }
    if !partial.is_empty() {
        eprintln!("rill search: partial: [{}]", partial.join(", "));
    }
    if ok.is_empty() && !members.is_empty() {
        return Err(anyhow!("no member of cluster {} answered", cluster.name));
    }
    if let Some(bucket) = &args.histogram {
        let mut sum: BTreeMap<String, u64> = BTreeMap::new();
        for a in &ok {
            for b in a["buckets"].as_array().into_iter().flatten() {
                if let Some(start) = b["start"].as_str() {
                    *sum.entry(start.to_owned()).or_default() += b["count"].as_u64().unwrap_or(0);
                }
            }
        }
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
        let n: u64 = ok.iter().map(|a| a["count"].as_u64().unwrap_or(0)).sum();
        let text = if args.json {
            json!({ "count": n, "partial": partial }).to_string()
        } else {
            n.to_string()
        };
        emit(out, &text)?;
        return Ok(());
    }
    let mut hits: Vec<Value> = ok
        .into_iter()
        .flat_map(|mut a| match a["hits"].take() {
            Value::Array(h) => h,
            _ => Vec::new(),
        })
        .collect();
    let ts = |v: &Value| v["ts"].as_str().unwrap_or_default().to_owned();
    // RFC 3339 in UTC with a fixed precision sorts as text.
    hits.sort_by_key(|v| std::cmp::Reverse(ts(v)));
    if args.oldest_first {
        hits.reverse();
    }
    let mut seen = HashSet::new();
    hits.retain(|v| {
        seen.insert((
            v["host"].to_string(),
            v["log"].to_string(),
            v["file_id"].to_string(),
            v["offset"].to_string(),
        ))
    });
    hits.truncate(args.limit as usize);
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

/// Why a member gave no answer.
enum Failed {
    /// It refused the request (4xx: a bad query, a missing token).
    Refused(String),
    /// It could not be asked, or failed (5xx, timeout).
    Down(String),
}

/// `GET <url>/<path>?<params>`: the JSON answer, or why there is none.
fn ask(
    url: &str,
    path: &str,
    params: &[(&str, String)],
    token: Option<&str>,
) -> Result<Value, Failed> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(WITHIN))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut req = agent.get(format!("{}/{path}", url.trim_end_matches('/')));
    for (k, v) in params {
        req = req.query(*k, v);
    }
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut answer = req.call().map_err(|e| Failed::Down(e.to_string()))?;
    let status = answer.status();
    let text = answer
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| Failed::Down(format!("HTTP {status}: {e}")))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| Failed::Down(format!("HTTP {status}: not JSON: {e}")))?;
    if status.is_client_error() {
        let mut why = body["error"].as_str().unwrap_or("refused").to_owned();
        if let Some(p) = body["position"].as_u64() {
            why.push_str(&format!(" (at position {p})"));
        }
        return Err(Failed::Refused(why));
    }
    if !status.is_success() {
        return Err(Failed::Down(format!(
            "HTTP {status}: {}",
            body["error"].as_str().unwrap_or("an error")
        )));
    }
    Ok(body)
}
