//! The HTTP search API, served by the parser on `search.listen` (loopback by
//! default). One thread, blocking: `tiny_http` is a small, dependency-light
//! server and searches take milliseconds, so no async runtime is needed.
//!
//! ```text
//! GET /search?q=&since=&until=&limit=&host=&log=&order=&before=&after=&context=
//! GET /count?q=&since=&until=&host=&log=
//! GET /histogram?bucket=&q=&since=&until=&host=&log=
//! GET /health
//! ```
//! Every answer is JSON. A bad request gets a 4xx status and
//! `{"error": "...", "position": N, "expected": "..."}` (position and
//! expected for query errors); nothing a client sends can stop the server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rill_index::{hit_json, IndexError, IndexSearcher, SearchRequest};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};
use tracing::{info, warn};

/// The most hits one request may ask for.
pub const MAX_LIMIT: usize = 10_000;
/// The most context lines on each side of a hit.
pub const MAX_CONTEXT: usize = 100;

/// A running API; stops (and joins its thread) when dropped.
pub struct SearchApi {
    addr: SocketAddr,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not listen on {addr}: {reason}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub reason: String,
}

impl SearchApi {
    /// Binds `addr` and serves the index in `index_dir` from a thread.
    pub fn start(addr: SocketAddr, index_dir: &Path) -> Result<SearchApi, ListenError> {
        let server = Server::http(addr).map_err(|e| ListenError {
            addr,
            reason: e.to_string(),
        })?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop, dir) = (server.clone(), stop.clone(), index_dir.to_owned());
            std::thread::Builder::new()
                .name("search-api".into())
                .spawn(move || serve(&server, &stop, &dir))
                .map_err(|e| ListenError {
                    addr,
                    reason: e.to_string(),
                })?
        };
        info!(%addr, "search api listening");
        Ok(SearchApi {
            addr,
            server,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SearchApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, stop: &AtomicBool, dir: &Path) {
    let mut searcher: Option<IndexSearcher> = None;
    while !stop.load(Ordering::SeqCst) {
        let req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "search api: could not receive a request");
                continue;
            }
        };
        let (status, body) = answer(&req, dir, &mut searcher);
        respond(req, status, &body);
    }
}

fn respond(req: Request, status: u16, body: &Value) {
    let header = Header::from_bytes("Content-Type", "application/json").expect("static header");
    let resp = Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header);
    let _ = req.respond(resp);
}

fn error(status: u16, msg: impl Into<String>) -> (u16, Value) {
    (status, json!({ "error": msg.into() }))
}

/// Status and JSON body for one request.
fn answer(req: &Request, dir: &Path, searcher: &mut Option<IndexSearcher>) -> (u16, Value) {
    if *req.method() != Method::Get {
        return error(
            405,
            format!("method {} not allowed; expected GET", req.method()),
        );
    }
    let (path, query) = req.url().split_once('?').unwrap_or((req.url(), ""));
    let params = match Params::parse(query) {
        Ok(p) => p,
        Err(e) => return error(400, e),
    };
    if path == "/health" {
        return (200, json!({ "status": "ok" }));
    }
    if !matches!(path, "/search" | "/count" | "/histogram") {
        return error(
            404,
            format!("unknown path {path:?}; expected /search, /count, /histogram or /health"),
        );
    }
    if searcher.is_none() {
        match IndexSearcher::open(dir) {
            Ok(s) => *searcher = Some(s),
            Err(e) => return error(503, e.to_string()),
        }
    }
    let s = searcher.as_ref().expect("opened above");
    if let Err(e) = s.reload() {
        return error(503, e.to_string());
    }
    let result = match path {
        "/search" => search(s, &params),
        "/count" => params.request(false).and_then(|r| {
            s.count(&r)
                .map_err(Bad::from)
                .map(|n| json!({ "count": n }))
        }),
        _ => histogram(s, &params),
    };
    match result {
        Ok(v) => (200, v),
        Err(Bad::Param(m)) => error(400, m),
        Err(Bad::Index(IndexError::Query(q))) => (
            400,
            json!({ "error": q.to_string(), "position": q.position, "expected": q.expected }),
        ),
        Err(Bad::Index(e)) => error(500, e.to_string()),
    }
}

enum Bad {
    Param(String),
    Index(IndexError),
}

impl From<IndexError> for Bad {
    fn from(e: IndexError) -> Self {
        Bad::Index(e)
    }
}

fn search(s: &IndexSearcher, p: &Params) -> Result<Value, Bad> {
    let req = p.request(true)?;
    let context = p.number("context", MAX_CONTEXT)?.unwrap_or(0);
    let before = p.number("before", MAX_CONTEXT)?.unwrap_or(context);
    let after = p.number("after", MAX_CONTEXT)?.unwrap_or(context);
    let hits = s.search(&req)?;
    let total = s.count(&req)?;
    let mut hl = s.highlighter(&req)?;
    let mut out = Vec::with_capacity(hits.len());
    for h in &hits {
        let ctx = if before + after > 0 {
            Some(s.context(h, before, after)?)
        } else {
            None
        };
        out.push(hit_json(h, &hl.ranges(&h.body), ctx.as_ref()));
    }
    Ok(json!({ "query": req.query, "count": total, "hits": out }))
}

fn histogram(s: &IndexSearcher, p: &Params) -> Result<Value, Bad> {
    let req = p.request(false)?;
    let bucket_text = p.get("bucket").unwrap_or("1m");
    let bucket = rill_index::time::parse_span(bucket_text).ok_or_else(|| {
        Bad::Param(format!(
            "bucket: expected a duration like 10s, 1m, 1h or 1d, got {bucket_text:?}"
        ))
    })?;
    let buckets = s.histogram(&req, bucket)?;
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    Ok(json!({ "query": req.query, "bucket": bucket_text, "total": total, "buckets": buckets }))
}

/// Decoded query-string parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Params, String> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((decode(k)?, decode(v)?));
        }
        for (k, _) in &out {
            if !KNOWN.contains(&k.as_str()) {
                return Err(format!(
                    "unknown parameter {k:?}; expected one of: {}",
                    KNOWN.join(", ")
                ));
            }
        }
        Ok(Params(out))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn number(&self, key: &str, max: usize) -> Result<Option<usize>, Bad> {
        self.get(key)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| {
                        Bad::Param(format!(
                            "{key}: expected a number from 0 to {max}, got {v:?}"
                        ))
                    })
            })
            .transpose()
    }

    /// The search request these parameters describe.
    fn request(&self, with_limit: bool) -> Result<SearchRequest, Bad> {
        let now = chrono::Utc::now();
        let time = |key: &str| {
            self.get(key)
                .map(|v| {
                    rill_index::time::parse_bound(v, now)
                        .map_err(|e| Bad::Param(format!("{key}: {e}")))
                })
                .transpose()
        };
        let oldest_first = match self.get("order") {
            None | Some("newest") => false,
            Some("oldest") => true,
            Some(o) => {
                return Err(Bad::Param(format!(
                    "order: expected newest or oldest, got {o:?}"
                )))
            }
        };
        let limit = if with_limit {
            self.number("limit", MAX_LIMIT)?.unwrap_or(100)
        } else {
            0
        };
        Ok(SearchRequest {
            query: self.get("q").unwrap_or("*").to_owned(),
            host: self.get("host").map(str::to_owned),
            log: self.get("log").map(str::to_owned),
            since: time("since")?,
            until: time("until")?,
            limit,
            oldest_first,
        })
    }
}

const KNOWN: [&str; 12] = [
    "q", "since", "until", "limit", "host", "log", "order", "context", "before", "after", "bucket",
    "_",
];

/// Percent-decoding with `+` as space; the result must be UTF-8.
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding at byte {i} of {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("parameter {s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_and_unknown_parameters_are_named() {
        assert_eq!(decode("GET+%2Fapi%20x").unwrap(), "GET /api x");
        assert_eq!(decode("caf%C3%A9").unwrap(), "café");
        assert!(decode("%zz").unwrap_err().contains("bad percent-encoding"));
        assert!(decode("%ff").unwrap_err().contains("not UTF-8"));
        let p = Params::parse("q=error&limit=5&since=15m").unwrap();
        let r = p.request(true).ok().unwrap();
        assert_eq!((r.query.as_str(), r.limit), ("error", 5));
        assert!(r.since.is_some());
        let e = Params::parse("qq=x").err().unwrap();
        assert!(e.starts_with("unknown parameter \"qq\""), "{e}");
        let bad = |q: &str| match Params::parse(q).unwrap().request(true) {
            Err(Bad::Param(m)) => m,
            _ => panic!("{q} accepted"),
        };
        assert!(bad("limit=lots").starts_with("limit: expected a number"));
        assert!(bad("since=yesterday").starts_with("since: expected a time like"));
        assert!(bad("order=random").starts_with("order: expected newest or oldest"));
    }
}
