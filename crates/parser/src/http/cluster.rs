//! The search API in a cluster (docs/cluster.md): a search asked of every
//! live member and merged ([`in_cluster`]), and what members ask each
//! other to find a handover overlap ([`held`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rill_index::tenure::{StoredFile, Tenure};
use serde_json::{json, Value};

use super::{fail, json_bytes, query_params, refuse, Api, Params, MAX_LIMIT, TOKEN_COOKIE};

/// A search endpoint a cluster's members answer together.
#[derive(Clone, Copy)]
pub(super) enum Fanned {
    Search,
    Count,
    Histogram,
    Facets,
}

/// At most this many requests ask the cluster's members at once; more are
/// refused (503) until one ends.
const MAX_FANOUTS: usize = 16;

/// Requests asking the cluster's members now.
static FANOUTS: AtomicUsize = AtomicUsize::new(0);

/// In a cluster (`cluster:`), a search request without `local=1` is asked
/// of every live member, each with `local=1`, and their answers merged
/// ([`rill_cluster::search`]): hits each line once, counts, buckets and
/// facets summed, and the members that did not answer named in `partial`
/// (for `/facets`, whose answer is keyed by field, in the header
/// `Rill-Partial`). The caller's token is passed on: the members share the
/// config and so its tokens. `None`: answer from this index.
pub(super) async fn in_cluster(
    api: &Api,
    params: &Params,
    headers: &HeaderMap,
    which: Fanned,
) -> Option<Response> {
    let cluster = api.cfg.as_ref()?.cluster.clone()?;
    match params.get("local") {
        Some("1") => return None,
        None | Some("0") => {}
        Some(v) => {
            return Some(refuse((
                StatusCode::BAD_REQUEST,
                format!(
                    "local: expected 1 (this member's index only) or 0 (every member's), got {:?}",
                    v.chars().take(64).collect::<String>()
                ),
            )))
        }
    }
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            FANOUTS.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let running = FANOUTS.fetch_add(1, Ordering::SeqCst);
    // Held by the asking thread: a client that hangs up does not free it
    // before the members' answers are in.
    let slot = Slot;
    if running >= MAX_FANOUTS {
        return Some(refuse((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_FANOUTS} searches across the cluster are running, the most at once; try again"),
        )));
    }
    let token = rill_http::presented_token(headers, Some(TOKEN_COOKIE));
    // `saved` was made `q` already.
    let pairs: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| k != "_" && k != "saved")
        .cloned()
        .collect();
    let limits = api.work.limits();
    let within = limits.request_timeout + Duration::from_secs(2);
    let path = match which {
        Fanned::Search => "search",
        Fanned::Count => "count",
        Fanned::Histogram => "histogram",
        Fanned::Facets => "facets",
    };
    let max_bytes = u64::try_from(limits.max_response_bytes).unwrap_or(u64::MAX);
    let asked = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        rill_cluster::search::ask_members(
            &cluster,
            path,
            &pairs,
            token.as_deref(),
            (within, max_bytes),
        )
    })
    .await;
    let mut answers = match asked {
        Ok(Ok(a)) => a,
        Ok(Err(rill_cluster::search::SearchError::Refused {
            member,
            status,
            mut answer,
        })) => {
            // A bad query: the member's own answer (error, position).
            // Anything else (its token refused) is the cluster's problem.
            let status = match status {
                400 => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            if status != StatusCode::BAD_REQUEST || !answer.is_object() {
                answer = json!({ "error": format!(
                    "member {member} refused the search: {}",
                    rill_cluster::search::why(&answer)
                ) });
            }
            return Some(rill_http::json(status, &answer));
        }
        Ok(Err(e @ rill_cluster::search::SearchError::NoneAnswered { .. })) => {
            let partial = match &e {
                rill_cluster::search::SearchError::NoneAnswered { partial, .. } => {
                    partial.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>()
                }
                _ => Vec::new(),
            };
            return Some(rill_http::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": e.to_string(), "partial": partial }),
            ));
        }
        Ok(Err(e)) => {
            return Some(rill_http::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": e.to_string() }),
            ))
        }
        Err(e) => {
            return Some(rill_http::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": format!("the cluster search ended: {e}") }),
            ))
        }
    };
    let partial = answers.partial_names();
    let members: Vec<String> = answers.ok.iter().map(|(m, _)| m.clone()).collect();
    let query = params.get("q").unwrap_or("*").to_owned();
    let body = match which {
        Fanned::Count => json!({
            "count": rill_cluster::search::merge_counts(&answers),
            "partial": partial,
            "members": members,
        }),
        Fanned::Histogram => {
            let buckets = rill_cluster::search::merge_buckets(&answers);
            let total = buckets.values().fold(0u64, |a, b| a.saturating_add(*b));
            let buckets: Vec<Value> = buckets
                .into_iter()
                .map(|(start, count)| json!({"start": start, "count": count}))
                .collect();
            json!({
                "query": query,
                "bucket": params.get("bucket").unwrap_or("1m"),
                "total": total,
                "buckets": buckets,
                "partial": partial,
                "members": members,
            })
        }
        Fanned::Facets => {
            let mut r = rill_http::json(
                StatusCode::OK,
                &rill_cluster::search::merge_facets(&answers, MAX_LIMIT),
            );
            if let Ok(v) = HeaderValue::from_str(&partial.join(",")) {
                r.headers_mut().insert("Rill-Partial", v);
            }
            return Some(r);
        }
        Fanned::Search => {
            let limit = params
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100)
                .min(MAX_LIMIT);
            let oldest = params.get("order") == Some("oldest");
            let count = rill_cluster::search::merge_counts(&answers);
            let mut hits = rill_cluster::search::merge_hits(&mut answers, limit, oldest);
            // The members kept to the byte limit each; together they may not.
            let budget = limits.max_response_bytes.saturating_sub(4096);
            let mut size = 0usize;
            let whole = hits.len();
            let kept = hits
                .iter()
                .take_while(|h| {
                    size = size.saturating_add(h.to_string().len() + 1);
                    size <= budget
                })
                .count();
            hits.truncate(kept);
            let mut v = json!({
                "query": query,
                "count": count,
                "hits": hits,
                "partial": partial,
                "members": members,
            });
            let truncated = answers
                .ok
                .iter()
                .find_map(|(_, a)| a.get("truncated").cloned());
            if kept < whole {
                v["truncated"] = json!({
                    "hits": kept,
                    "limit_bytes": limits.max_response_bytes,
                    "reason": format!(
                        "the answer reached its limit of {} bytes after {kept} of {whole} hits; ask for fewer (limit, context) or narrow the query",
                        limits.max_response_bytes
                    ),
                });
            } else if let Some(t) = truncated {
                v["truncated"] = t;
            }
            v
        }
    };
    Some(rill_http::json(StatusCode::OK, &body))
}

/// `/held?host=&log=&file_id=&after=T&from=A&to=B`: the offsets,
/// ascending and at most [`crate::overlap::HELD_PAGE`], at which events of
/// that file (`file_id` as stored) start within `A..=B`, indexed under a
/// tenure after `T`. Another member of the cluster asks it to find its
/// copies of a handover overlap (overlap.rs).
pub(super) async fn held(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    const KNOWN: [&str; 6] = ["host", "log", "file_id", "after", "from", "to"];
    let params = match query_params(query, &KNOWN) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let asked = (|| -> Result<(String, StoredFile, u64, u64, u64), String> {
        let text = |k: &str| {
            params
                .get(k)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{k}: required"))
        };
        let number = |k: &str| -> Result<u64, String> {
            let v = text(k)?;
            v.parse().map_err(|_| {
                format!(
                    "{k}: expected a whole number from 0 to {}, got {:?}",
                    u64::MAX,
                    v.chars().take(32).collect::<String>()
                )
            })
        };
        let (from, to) = (number("from")?, number("to")?);
        if from > to {
            return Err(format!("from: {from} is after to: {to}"));
        }
        let file = StoredFile {
            log: text("log")?,
            file_id: text("file_id")?,
        };
        Ok((text("host")?, file, number("after")?, from, to))
    })();
    let (host, file, after, from, to) = match asked {
        Ok(a) => a,
        Err(e) => return refuse((StatusCode::BAD_REQUEST, e)),
    };
    let work = api.work.clone();
    work.run(move |_job| {
        let searcher = match api.current_or_503() {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        match searcher.tenure_offsets(
            &host,
            &file,
            Tenure::After(after),
            (from, to),
            crate::overlap::HELD_PAGE,
        ) {
            Ok(offsets) => {
                // A full page: there may be more after its last offset.
                let more = offsets.len() >= crate::overlap::HELD_PAGE;
                (
                    StatusCode::OK,
                    json_bytes(&json!({ "offsets": offsets, "more": more })),
                )
            }
            Err(e) => fail(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": e.to_string()}),
            ),
        }
    })
    .await
}
