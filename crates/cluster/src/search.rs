//! Searching a cluster: every live member's search API (`advertise.search`,
//! from etcd) asked in parallel, the answers merged. `rill search` and the
//! search API (and so the page) both use it.
//!
//! - Each member is asked with `local=1`: it answers from its own index
//!   and does not ask the others again.
//! - Hits: each member's newest (or oldest) `limit`, merged in time order;
//!   a line two members hold (a handover overlap) is kept once, by its
//!   identity (host, log, file, offset).
//! - Counts, histogram buckets and facet counts: summed. A handover overlap
//!   is counted once per member holding it (docs/cluster.md).
//! - A member that does not answer within the deadline, fails (5xx),
//!   refuses the request (4xx) or advertises no search API is named in
//!   [`Answers::partial`]. When no member answered and one refused, the
//!   search fails with that refusal: a bad query, which every member
//!   refuses alike.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rill_config::cluster::ClusterSettings;
use serde_json::{json, Map, Value};

use crate::member::live_members;
use crate::EtcdError;

/// How long a member has to answer `rill search`.
pub const WITHIN: Duration = Duration::from_secs(30);

/// At most this many bytes of one member's answer are read by
/// `rill search` (the search API reads at most its own answer limit).
pub const MAX_ANSWER: u64 = 64 << 20;

/// What the members said.
#[derive(Debug, Default)]
pub struct Answers {
    /// Member name and its JSON answer, for each member that answered.
    pub ok: Vec<(String, Value)>,
    /// Member name and why it gave no answer.
    pub partial: Vec<(String, String)>,
}

impl Answers {
    /// The names of the members that gave no answer.
    pub fn partial_names(&self) -> Vec<String> {
        self.partial.iter().map(|(m, _)| m.clone()).collect()
    }
}

/// Why a cluster search has no answer at all.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("cluster {cluster}: cannot read its members: {source}")]
    Members {
        cluster: String,
        #[source]
        source: EtcdError,
    },
    /// A member refused the request (4xx): its status and JSON answer
    /// (`error`, and `position` for a query that does not parse).
    #[error("member {member} refused the search: {}", why(.answer))]
    Refused {
        member: String,
        status: u16,
        answer: Value,
    },
    #[error("no member of cluster {cluster} answered: {}", .partial.iter().map(|(m, w)| format!("{m}: {w}")).collect::<Vec<_>>().join("; "))]
    NoneAnswered {
        cluster: String,
        partial: Vec<(String, String)>,
    },
}

/// A refusal's reason as a user reads it: the error, and where in the
/// query it is.
pub fn why(answer: &Value) -> String {
    let mut why = answer["error"].as_str().unwrap_or("refused").to_owned();
    if let Some(p) = answer["position"].as_u64() {
        why.push_str(&format!(" (at position {p})"));
    }
    why
}

/// `GET <member's search API>/<path>?<params>&local=1` on every live member
/// at once, each within `within`. `token` is sent as a bearer token.
pub fn ask_members(
    cluster: &ClusterSettings,
    path: &str,
    params: &[(String, String)],
    token: Option<&str>,
    (within, max_bytes): (Duration, u64),
) -> Result<Answers, SearchError> {
    let members = live_members(cluster).map_err(|source| SearchError::Members {
        cluster: cluster.name.clone(),
        source,
    })?;
    let mut params: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "local")
        .cloned()
        .collect();
    params.push(("local".into(), "1".into()));
    let said: Vec<(String, Result<Value, Failed>)> = std::thread::scope(|s| {
        let asks: Vec<_> = members
            .iter()
            .map(|m| {
                let params = &params;
                s.spawn(move || {
                    let answer = match &m.search {
                        Some(url) => ask(url, path, params, token, (within, max_bytes)),
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
    let mut answers = Answers::default();
    let mut refused = None;
    for (member, a) in said {
        match a {
            Ok(v) => answers.ok.push((member, v)),
            // A bad query: every member says so; unless another member
            // answered (this one is older, or refuses our token).
            Err(Failed::Refused(status, answer)) => {
                answers
                    .partial
                    .push((member.clone(), format!("HTTP {status}: {}", why(&answer))));
                refused.get_or_insert(SearchError::Refused {
                    member,
                    status,
                    answer,
                });
            }
            Err(Failed::Down(why)) => answers.partial.push((member, why)),
        }
    }
    if answers.ok.is_empty() {
        if let Some(r) = refused {
            return Err(r);
        }
    }
    if answers.ok.is_empty() && !answers.partial.is_empty() {
        return Err(SearchError::NoneAnswered {
            cluster: cluster.name.clone(),
            partial: answers.partial,
        });
    }
    Ok(answers)
}

/// The members' hits merged: newest first (oldest first with
/// `oldest_first`), each line once, at most `limit`.
pub fn merge_hits(answers: &mut Answers, limit: usize, oldest_first: bool) -> Vec<Value> {
    let mut hits: Vec<Value> = answers
        .ok
        .iter_mut()
        .flat_map(|(_, a)| match a["hits"].take() {
            Value::Array(h) => h,
            _ => Vec::new(),
        })
        .collect();
    let ts = |v: &Value| v["ts"].as_str().unwrap_or_default().to_owned();
    // RFC 3339 in UTC with a fixed precision sorts as text.
    hits.sort_by_key(|v| std::cmp::Reverse(ts(v)));
    if oldest_first {
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
    hits.truncate(limit);
    hits
}

/// The members' `count`s summed.
pub fn merge_counts(answers: &Answers) -> u64 {
    answers
        .ok
        .iter()
        .map(|(_, a)| a["count"].as_u64().unwrap_or(0))
        .fold(0, u64::saturating_add)
}

/// The members' histogram buckets summed, by start.
pub fn merge_buckets(answers: &Answers) -> BTreeMap<String, u64> {
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for (_, a) in &answers.ok {
        for b in a["buckets"].as_array().into_iter().flatten() {
            if let Some(start) = b["start"].as_str() {
                let n = sum.entry(start.to_owned()).or_default();
                *n = n.saturating_add(b["count"].as_u64().unwrap_or(0));
            }
        }
    }
    sum
}

/// The members' facets (`{field: {value: count}}`) summed; each field keeps
/// its `keep` most frequent values.
pub fn merge_facets(answers: &Answers, keep: usize) -> Value {
    let mut sum: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (_, a) in &answers.ok {
        for (field, values) in a.as_object().into_iter().flatten() {
            for (value, n) in values.as_object().into_iter().flatten() {
                let c = sum
                    .entry(field.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default();
                *c = c.saturating_add(n.as_u64().unwrap_or(0));
            }
        }
    }
    let mut out = Map::new();
    for (field, values) in sum {
        let mut values: Vec<(String, u64)> = values.into_iter().collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        values.truncate(keep);
        let values: Map<String, Value> = values.into_iter().map(|(v, n)| (v, json!(n))).collect();
        out.insert(field, Value::Object(values));
    }
    Value::Object(out)
}

/// `GET <url>/<path>` of one member's search API (`/status`): its JSON
/// answer, or why there is none.
pub fn get(url: &str, path: &str, token: Option<&str>, within: Duration) -> Result<Value, String> {
    ask(url, path, &[], token, (within, MAX_ANSWER)).map_err(|f| match f {
        Failed::Refused(status, answer) => format!("HTTP {status}: {}", why(&answer)),
        Failed::Down(why) => why,
    })
}

/// Why one member gave no answer.
enum Failed {
    /// It refused the request (4xx): the status and its JSON answer.
    Refused(u16, Value),
    /// It could not be asked, or failed (5xx, timeout, not JSON).
    Down(String),
}

/// `GET <url>/<path>?<params>`: the JSON answer, or why there is none.
fn ask(
    url: &str,
    path: &str,
    params: &[(String, String)],
    token: Option<&str>,
    (within, max_bytes): (Duration, u64),
) -> Result<Value, Failed> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(within))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut req = agent.get(format!("{}/{path}", url.trim_end_matches('/')));
    for (k, v) in params {
        req = req.query(k, v);
    }
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut answer = req.call().map_err(|e| Failed::Down(e.to_string()))?;
    let status = answer.status();
    let text = answer
        .body_mut()
        .with_config()
        .limit(max_bytes)
        .read_to_string()
        .map_err(|e| Failed::Down(format!("HTTP {status}: {e}")))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| Failed::Down(format!("HTTP {status}: not JSON: {e}")))?;
    if status.is_client_error() {
        return Err(Failed::Refused(status.as_u16(), body));
    }
    if !status.is_success() {
        return Err(Failed::Down(format!(
            "HTTP {status}: {}",
            body["error"].as_str().unwrap_or("an error")
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(members: &[Value]) -> Answers {
        Answers {
            ok: members
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("m{i}"), v.clone()))
                .collect(),
            partial: Vec::new(),
        }
    }

    fn hit(ts: &str, offset: u64) -> Value {
        json!({"ts": ts, "host": "h", "log": "l", "file_id": "f", "offset": offset})
    }

    #[test]
    fn hits_merge_in_time_order_and_a_line_two_members_hold_is_kept_once() {
        let mut a = answers(&[
            json!({"hits": [hit("2026-01-01T00:00:03Z", 30), hit("2026-01-01T00:00:01Z", 10)]}),
            json!({"hits": [hit("2026-01-01T00:00:03Z", 30), hit("2026-01-01T00:00:02Z", 20)]}),
        ]);
        let offsets = |h: Vec<Value>| {
            h.iter()
                .map(|v| v["offset"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets(merge_hits(&mut a, 10, false)), [30, 20, 10]);
        let mut a = answers(&[
            json!({"hits": [hit("2026-01-01T00:00:01Z", 10), hit("2026-01-01T00:00:03Z", 30)]}),
            json!({"hits": [hit("2026-01-01T00:00:02Z", 20)]}),
        ]);
        assert_eq!(offsets(merge_hits(&mut a, 2, true)), [10, 20]);
    }

    #[test]
    fn counts_buckets_and_facets_are_summed_without_overflow() {
        let a = answers(&[
            json!({"count": u64::MAX, "buckets": [{"start": "a", "count": 2}], "host": {"x": 1, "y": 5}}),
            json!({"count": 5, "buckets": [{"start": "a", "count": 3}, {"start": "b", "count": 1}], "host": {"x": 7}}),
            json!({"error": "not a count"}),
        ]);
        assert_eq!(merge_counts(&a), u64::MAX);
        assert_eq!(
            merge_buckets(&a).into_iter().collect::<Vec<_>>(),
            [("a".to_owned(), 5), ("b".to_owned(), 1)]
        );
        assert_eq!(merge_facets(&a, 1), json!({"host": {"x": 8}}));
    }
}
