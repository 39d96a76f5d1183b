//! The HTTP search API, served by the parser on `search.listen` (loopback by
//! default) through [`rill_http`]'s server and its limits.
//!
//! ```text
//! GET /search?q=&since=&until=&limit=&host=&log=&order=&before=&after=&context=
//! GET /count?q=&since=&until=&host=&log=
//! GET /histogram?bucket=&q=&since=&until=&host=&log=
//! GET /rules
//! GET /rules/history?rule=&limit=
//! GET /rules/test?rule=&since=
//! GET /metrics
//! GET /health
//! GET /held?host=&log=&file_id=&after=&from=&to=
//! ```
//! In a cluster, the search endpoints (and `/facets`) ask every live member
//! unless given `local=1`, and members ask each other `/held` (cluster.rs).
//! Every answer is JSON. A bad request gets a 4xx status and
//! `{"error": "...", "position": N, "expected": "..."}` (position and
//! expected for query errors). Searches run as [`rill_http::Work`]: under a
//! deadline, a few at once, their answers within a byte budget (a search
//! that would pass it stops at the hits that fit and says so in
//! `truncated`); nothing a client sends can stop the server. The parser
//! keeps it running with [`ApiKeeper`] (a taken port, bad TLS or tokens
//! files or a stopped server are tried again every 10 s; changed files are
//! taken within 5 s).
//!
//! With `search.tls` only TLS is spoken on the port. With
//! `search.tokens_file` every request needs `Authorization: Bearer TOKEN`
//! (or the cookie [`TOKEN_COOKIE`], which the page sets for its `/live`
//! stream: `EventSource` cannot send headers) except `GET /health` (the
//! supervisor's liveness probe: no data) and `GET /` (the page itself,
//! constant text: it asks for the token when a call is refused).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use rill_config::hub::Tokens;
use rill_config::Config;
use rill_http::{FileWatch, Guard, HttpServer, Job, Limits, ListenError, Settings, Tls, Work};
use rill_index::{hit_json, Deadline, IndexError, IndexSearcher, SearchRequest};
use serde_json::{json, Value};
use tracing::{info, warn};

/// The most hits one request may ask for.
pub const MAX_LIMIT: usize = 10_000;
/// The most context lines on each side of a hit.
pub const MAX_CONTEXT: usize = 100;
/// The longest query string (everything after `?`), in bytes.
pub const MAX_QUERY_STRING: usize = 8192;

/// The cookie a browser may send the token in (as the page sets it:
/// percent-encoded, `SameSite=Strict; Path=/`, `Secure` over https).
pub const TOKEN_COOKIE: &str = "rill_token";

/// Paths answered without a token.
const OPEN_PATHS: [&str; 2] = ["/health", "/"];

/// A running API; stops when dropped.
pub struct SearchApi {
    server: HttpServer,
}

impl SearchApi {
    /// Binds `addr` and serves the index in `index_dir` with the default
    /// [`Limits`].
    pub fn start(addr: SocketAddr, index_dir: &Path) -> Result<SearchApi, ListenError> {
        SearchApi::start_with(addr, index_dir, Limits::default())
    }

    pub fn start_with(
        addr: SocketAddr,
        index_dir: &Path,
        limits: Limits,
    ) -> Result<SearchApi, ListenError> {
        SearchApi::start_saved(addr, index_dir, limits, Saved::default(), None)
    }

    /// [`SearchApi::start_with`], with the config's saved queries, which
    /// `saved=NAME` runs, its rules (`/rules`), when it has any, and its
    /// `search.tls` and `search.tokens_file` (a file that cannot be used is
    /// an error naming it).
    pub fn start_saved(
        addr: SocketAddr,
        index_dir: &Path,
        limits: Limits,
        saved: Saved,
        rules: Option<Arc<Config>>,
    ) -> Result<SearchApi, ListenError> {
        let settings =
            guarded(limits, rules.as_deref()).map_err(|reason| ListenError { addr, reason })?;
        SearchApi::start_settings(addr, index_dir, settings, saved, rules)
    }

    fn start_settings(
        addr: SocketAddr,
        index_dir: &Path,
        settings: Settings,
        saved: Saved,
        rules: Option<Arc<Config>>,
    ) -> Result<SearchApi, ListenError> {
        let dir = index_dir.to_owned();
        let server = HttpServer::bind_with("search", addr, settings, move |work| {
            router(dir, work, saved.clone(), rules.clone())
        })?;
        Ok(SearchApi { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Whether the server still runs (see [`HttpServer::is_running`]).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }
}

/// `limits` with the TLS and the guard `cfg.search` asks for, or why its
/// files cannot be used (naming the key and the file).
fn guarded(limits: Limits, cfg: Option<&Config>) -> Result<Settings, String> {
    let mut settings = Settings::from(limits);
    let Some(search) = cfg.map(|c| &c.search) else {
        return Ok(settings);
    };
    if let Some(files) = &search.tls {
        settings.tls = Some(Tls::from_files(files).map_err(|e| format!("search.tls: {e}"))?);
    }
    if let Some(path) = &search.tokens_file {
        let mut guard = Guard::new("search");
        guard.tokens = Some(Tokens::load(path).map_err(|e| format!("search.tokens_file: {e}"))?);
        guard.open_paths = OPEN_PATHS.iter().map(|p| (*p).to_owned()).collect();
        guard.cookie = Some(TOKEN_COOKIE.to_owned());
        settings.guard = Some(guard);
    }
    Ok(settings)
}

/// The TLS and tokens files of `cfg.search`.
fn watched(cfg: Option<&Config>) -> FileWatch {
    let Some(search) = cfg.map(|c| &c.search) else {
        return FileWatch::new(Vec::new());
    };
    let tls = search
        .tls
        .iter()
        .flat_map(|t| [t.cert.clone(), t.key.clone()]);
    FileWatch::new(tls.chain(search.tokens_file.clone()).collect())
}

/// The search API, started again when it is not running (its port was
/// taken, its TLS or tokens files could not be used, or its server
/// stopped): at most every [`ApiKeeper::RETRY`]. Changed TLS or tokens
/// files (a renewed certificate, a new token) are taken within
/// [`FileWatch::EVERY`]: the API restarts with them, unless they cannot
/// be used, and then it goes on with the ones it has.
pub struct ApiKeeper {
    listen: Option<std::net::SocketAddr>,
    dir: std::path::PathBuf,
    saved: Saved,
    rules: Option<Arc<Config>>,
    api: Option<SearchApi>,
    tried: Instant,
    /// The files as the running API (or the last try) read them.
    files: FileWatch,
}

impl ApiKeeper {
    const RETRY: Duration = Duration::from_secs(10);

    pub fn new(
        listen: Option<std::net::SocketAddr>,
        dir: &std::path::Path,
        saved: Saved,
        rules: Option<Arc<Config>>,
    ) -> ApiKeeper {
        let mut k = ApiKeeper {
            listen,
            dir: dir.to_owned(),
            saved,
            api: None,
            tried: Instant::now(),
            files: watched(rules.as_deref()),
            rules,
        };
        k.start();
        k
    }

    fn start(&mut self) {
        let Some(addr) = self.listen else { return };
        self.tried = Instant::now();
        self.files.mark();
        match SearchApi::start_saved(
            addr,
            &self.dir,
            Limits::default(),
            self.saved.clone(),
            self.rules.clone(),
        ) {
            Ok(a) => self.api = Some(a),
            Err(e) => warn!(error = %e, retry_s = Self::RETRY.as_secs(), "search api NOT running"),
        }
    }

    /// Starts the API again if it is not running and a retry is due, or
    /// if its TLS or tokens files changed.
    pub fn tick(&mut self) {
        if self.api.as_ref().is_some_and(|a| !a.is_running()) {
            warn!("search api stopped; starting it again");
            self.api = None;
        }
        if self.api.is_none() && self.listen.is_some() && self.tried.elapsed() >= Self::RETRY {
            self.start();
        }
        if self.api.is_some() && self.files.changed() {
            self.reload();
        }
    }

    /// A new API on the files as they are now, if they can be used; the
    /// one running goes on otherwise.
    fn reload(&mut self) {
        let Some(addr) = self.listen else { return };
        match guarded(Limits::default(), self.rules.as_deref()) {
            Ok(settings) => {
                info!(
                    "search.tls or search.tokens_file changed; restarting the search api with them"
                );
                // The port is free once the old server is dropped.
                self.api = None;
                self.tried = Instant::now();
                match SearchApi::start_settings(
                    addr,
                    &self.dir,
                    settings,
                    self.saved.clone(),
                    self.rules.clone(),
                ) {
                    Ok(a) => self.api = Some(a),
                    Err(e) => {
                        warn!(error = %e, retry_s = Self::RETRY.as_secs(), "search api NOT running")
                    }
                }
            }
            Err(e) => warn!(
                error = %e,
                "search.tls or search.tokens_file changed but cannot be used; the search api goes on with what it read before"
            ),
        }
    }
}

mod cluster;
use cluster::{held, in_cluster, Fanned};

/// What every handler shares.
#[derive(Clone)]
struct Api {
    dir: PathBuf,
    work: Work,
    saved: Saved,
    /// The config (`/rules`, `/facets`; `/metrics` and `/status` ask its
    /// supervisor).
    cfg: Option<Arc<Config>>,
    /// Opened on the first search that finds an index.
    searcher: Arc<Mutex<Option<Arc<IndexSearcher>>>>,
}

/// The API's routes on `work`'s limits.
pub fn router(dir: PathBuf, work: Work, saved: Saved, cfg: Option<Arc<Config>>) -> Router {
    let api = Api {
        dir,
        work,
        saved,
        cfg,
        searcher: Arc::default(),
    };
    Router::new()
        .route(
            "/health",
            get(|| async { rill_http::json(StatusCode::OK, &json!({"status": "ok"})) }),
        )
        .route(
            "/search",
            get(|s, h, q| endpoint(s, h, q, Endpoint::Search)),
        )
        .route("/count", get(|s, h, q| endpoint(s, h, q, Endpoint::Count)))
        .route(
            "/histogram",
            get(|s, h, q| endpoint(s, h, q, Endpoint::Histogram)),
        )
        .route(
            "/rules",
            get(|s, q| rules_endpoint(s, q, RulesEndpoint::List)),
        )
        .route(
            "/rules/history",
            get(|s, q| rules_endpoint(s, q, RulesEndpoint::History)),
        )
        .route(
            "/rules/test",
            get(|s, q| rules_endpoint(s, q, RulesEndpoint::Test)),
        )
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/facets", get(facets))
        .route("/saved", get(saved_queries))
        .route("/status", get(status))
        .route("/held", get(held))
        .route("/live", get(live))
        .fallback(unknown)
        .with_state(api)
}

async fn unknown(method: Method, uri: Uri) -> Response {
    if method != Method::GET {
        return rill_http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed; expected GET"),
        );
    }
    rill_http::error(
        StatusCode::NOT_FOUND,
        format!(
            "unknown path {:?}; expected /, /search, /count, /histogram, /facets, /saved, /status, /rules, /rules/history, /rules/test, /metrics or /health",
            uri.path()
        ),
    )
}

/// The search page (`page/index.html`, in the binary: no network needed).
const PAGE: &str = include_str!("page/index.html");

async fn page() -> Response {
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            "content-security-policy",
            "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        )
        .body(axum::body::Body::from(PAGE))
        .unwrap_or_default()
}

/// `/live?topic=&filter=` (crate::live).
async fn live(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let params = match query_params(query, &["topic", "filter", "_"]) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let Some(cfg) = api.cfg.clone() else {
        return rill_http::error(StatusCode::NOT_FOUND, "no config");
    };
    let topic = params.get("topic").unwrap_or("line/#");
    let filter = params.get("filter").map(str::to_owned);
    crate::live::stream(&*cfg, topic, filter)
}

/// `/saved`: the config's saved queries, by name.
async fn saved_queries(State(api): State<Api>) -> Response {
    rill_http::json(StatusCode::OK, &json!({ "queries": *api.saved }))
}

/// `/status`: the supervisor's report (as `rill status --json`), with the
/// rules.
async fn status(State(api): State<Api>) -> Response {
    let work = api.work.clone();
    work.run(move |_job| {
        let Some(cfg) = api.cfg.clone() else {
            return fail(StatusCode::NOT_FOUND, &json!({ "error": "no config" }));
        };
        let ctx = zmq::Context::new();
        match rill_bus::control::status(&ctx, &cfg.control_endpoint(), Duration::from_secs(2)) {
            Ok(report) => {
                let mut v = serde_json::to_value(&report).unwrap_or_default();
                if let (Some(o), Ok(rules)) = (v.as_object_mut(), rill_rules::summary(&cfg)) {
                    o.insert("rules".into(), rules.into());
                }
                (StatusCode::OK, json_bytes(&v))
            }
            Err(e) => fail(StatusCode::SERVICE_UNAVAILABLE, &json!({ "error": e })),
        }
    })
    .await
}

/// `/facets?q=&since=&until=&host=&log=`: matching events per configured
/// host and per log (the ones with any), for the page's filters.
async fn facets(State(api): State<Api>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = match search_params(query, &api.saved) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    if let Some(r) = in_cluster(&api, &params, &headers, Fanned::Facets).await {
        return r;
    }
    let work = api.work.clone();
    work.run(move |job| {
        let searcher = match api.current_or_503() {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        let deadline = Deadline::new(job.deadline, job.cancelled.clone());
        let req = match params.request(false, deadline) {
            Ok(r) => r,
            Err(Bad::Param(m)) => return fail(StatusCode::BAD_REQUEST, &json!({ "error": m })),
            Err(Bad::Index(e)) => return fail(StatusCode::BAD_REQUEST, &json!({ "error": e.to_string() })),
        };
        let (hosts, logs): (Vec<String>, Vec<String>) = api.cfg.as_ref().map_or_else(Default::default, |c| {
            (c.hosts.keys().cloned().collect(), c.logs.keys().cloned().collect())
        });
        let mut out = serde_json::Map::new();
        for (field, values) in [("host", hosts), ("log", logs)] {
            let mut counts = serde_json::Map::new();
            for v in values {
                let mut r = req.clone();
                if field == "host" {
                    r.host = Some(v.clone());
                } else {
                    r.log = Some(v.clone());
                }
                match searcher.count(&r) {
                    Ok(0) => {}
                    Ok(n) => {
                        counts.insert(v, n.into());
                    }
                    Err(IndexError::Query(q)) => {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            &json!({ "error": q.to_string(), "position": q.position, "expected": q.expected }),
                        )
                    }
                    Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, &json!({ "error": e.to_string() })),
                }
            }
            out.insert(field.into(), Value::Object(counts));
        }
        match field_facets(&searcher, &req) {
            Ok(fields) => out.extend(fields),
            Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, &json!({ "error": e.to_string() })),
        }
        (StatusCode::OK, json_bytes(&Value::Object(out)))
    })
    .await
}

/// Parsed fields with few values (`fields.status`, `fields.level`), as
/// facets: the fields of the newest [`FACET_SAMPLE`] matches with at most
/// [`FACET_VALUES`] values among them, each value counted over all
/// matches. At most [`FACET_FIELDS`] fields.
fn field_facets(
    s: &IndexSearcher,
    req: &SearchRequest,
) -> Result<serde_json::Map<String, Value>, IndexError> {
    const FACET_SAMPLE: usize = 500;
    const FACET_VALUES: usize = 10;
    const FACET_FIELDS: usize = 5;
    let mut sample = req.clone();
    sample.limit = FACET_SAMPLE;
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for hit in s.hits(&sample)? {
        for (name, v) in hit?.fields {
            let value = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            let simple = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !value.is_empty()
                && value.len() <= 64
                && !value.contains(['"', '\\']);
            if simple {
                seen.entry(name).or_default().insert(value);
            }
        }
    }
    let base = req.query.trim();
    let mut out = serde_json::Map::new();
    for (name, values) in seen
        .into_iter()
        .filter(|(_, v)| v.len() <= FACET_VALUES)
        .take(FACET_FIELDS)
    {
        let mut counts = serde_json::Map::new();
        for v in values {
            let clause = format!("fields.{name}:\"{v}\"");
            let mut r = req.clone();
            r.query = if base.is_empty() || base == "*" {
                clause
            } else {
                format!("({base}) AND {clause}")
            };
            let n = s.count(&r)?;
            if n > 0 {
                counts.insert(v, n.into());
            }
        }
        out.insert(format!("fields.{name}"), Value::Object(counts));
    }
    Ok(out)
}

/// `/metrics` (crate::metrics), in Prometheus's text format.
async fn metrics(State(api): State<Api>) -> Response {
    let work = api.work.clone();
    let mut resp = work
        .run(move |_job| {
            let searcher = api.current().ok();
            let text = crate::metrics::render(api.cfg.as_deref(), searcher.as_deref());
            (StatusCode::OK, text.into_bytes())
        })
        .await;
    if resp.status() == StatusCode::OK {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
    }
    resp
}

#[derive(Clone, Copy)]
enum RulesEndpoint {
    List,
    History,
    Test,
}

/// `/rules` (as `rill rules --json`), `/rules/history?rule=&limit=`
/// (newest first, default 20), `/rules/test?rule=&since=` (default 1h):
/// what `rill rules` prints, from the same store and index.
async fn rules_endpoint(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    which: RulesEndpoint,
) -> Response {
    let params = match query_params(query, &["rule", "limit", "since", "_"]) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let Some(cfg) = api.cfg.clone().filter(|c| !c.rules.is_empty()) else {
        return rill_http::error(StatusCode::NOT_FOUND, "the config has no rules");
    };
    let work = api.work.clone();
    work.run(move |_job| {
        let get = |k: &str| params.raw(k);
        match rules_answer(&api, &cfg, which, get("rule"), get("limit"), get("since")) {
            Ok(v) => (StatusCode::OK, json_bytes(&v)),
            Err((status, m)) => fail(status, &json!({ "error": m })),
        }
    })
    .await
}

fn rules_answer(
    api: &Api,
    cfg: &Config,
    which: RulesEndpoint,
    rule: Option<&str>,
    limit: Option<&str>,
    since: Option<&str>,
) -> Result<Value, (StatusCode, String)> {
    let internal = |e: anyhow::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
    let known = |name: &str| {
        cfg.rules.get(name).ok_or_else(|| {
            let names: Vec<&str> = cfg.rules.keys().map(String::as_str).collect();
            (
                StatusCode::NOT_FOUND,
                format!(
                    "no rule {:?}; rules: {}",
                    name.chars().take(64).collect::<String>(),
                    names.join(", ")
                ),
            )
        })
    };
    match which {
        RulesEndpoint::List => Ok(json!({ "rules": rill_rules::summary(cfg).map_err(internal)? })),
        RulesEndpoint::History => {
            if let Some(r) = rule {
                known(r)?;
            }
            let limit = match limit {
                None => 20,
                Some(l) => l
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=rill_rules::store::KEEP_FINISHED * 20).contains(n))
                    .ok_or((
                        StatusCode::BAD_REQUEST,
                        format!(
                            "limit: expected 1 to {}",
                            rill_rules::store::KEEP_FINISHED * 20
                        ),
                    ))?,
            };
            let store = rill_rules::read(&rill_rules::dir(cfg)).map_err(internal)?;
            let firings: Vec<Value> = store
                .history(rule, limit)
                .iter()
                .map(|r| r.json())
                .collect();
            Ok(json!({ "firings": firings }))
        }
        RulesEndpoint::Test => {
            let name = rule.ok_or((
                StatusCode::BAD_REQUEST,
                "rule: expected a rule's name".into(),
            ))?;
            let r = known(name)?;
            if let Err(e) = rill_rules::check(name, r) {
                return Err((StatusCode::BAD_REQUEST, e));
            }
            let since_text = since.unwrap_or("1h");
            let from = rill_index::time::parse_span(since_text)
                .and_then(|s| chrono::Utc::now().checked_sub_signed(s))
                .ok_or((
                    StatusCode::BAD_REQUEST,
                    format!("since: expected a span like 15m, 1h or 7d, got {since_text:?}"),
                ))?;
            let searcher = api
                .current()
                .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            let (matched, firings) =
                rill_rules::engine::test(&searcher, cfg, name, r, from).map_err(internal)?;
            // At most MAX_LIMIT firings in an answer; how many in all.
            let total = firings.len();
            let shown: Vec<&rill_rules::Firing> = firings.iter().take(MAX_LIMIT).collect();
            Ok(json!({
                "rule": name, "since": since_text, "matched": matched,
                "would_fire": total, "firings": shown,
            }))
        }
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Search,
    Count,
    Histogram,
}

async fn endpoint(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    which: Endpoint,
) -> Response {
    let params = match search_params(query, &api.saved) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let fanned = match which {
        Endpoint::Search => Fanned::Search,
        Endpoint::Count => Fanned::Count,
        Endpoint::Histogram => Fanned::Histogram,
    };
    if let Some(r) = in_cluster(&api, &params, &headers, fanned).await {
        return r;
    }
    let work = api.work.clone();
    let started = Instant::now();
    let resp = work.run(move |job| answer(&api, &params, which, job)).await;
    crate::metrics::timings()
        .search
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Status and JSON body for one request, computed on a worker thread.
fn answer(api: &Api, params: &Params, which: Endpoint, job: &Job) -> (StatusCode, Vec<u8>) {
    let searcher = match api.current_or_503() {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let deadline = Deadline::new(job.deadline, job.cancelled.clone());
    let result = match which {
        Endpoint::Search => search(&searcher, params, deadline, job.max_response_bytes),
        Endpoint::Count => params.request(false, deadline).and_then(|r| {
            let n = searcher.count(&r)?;
            Ok(json_bytes(&json!({ "count": n })))
        }),
        Endpoint::Histogram => histogram(&searcher, params, deadline),
    };
    match result {
        Ok(body) => (StatusCode::OK, body),
        Err(Bad::Param(m)) => fail(StatusCode::BAD_REQUEST, &json!({ "error": m })),
        Err(Bad::Index(IndexError::Query(q))) => fail(
            StatusCode::BAD_REQUEST,
            &json!({ "error": q.to_string(), "position": q.position, "expected": q.expected }),
        ),
        Err(Bad::Index(IndexError::Stopped)) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "error": format!(
                "the search ran longer than its deadline of {}s and was stopped; narrow it (since, host, log) or ask for less",
                api.work.limits().request_timeout.as_secs()
            ) }),
        ),
        Err(Bad::Index(e)) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "error": e.to_string() }),
        ),
    }
}

impl Api {
    fn searcher(&self) -> Result<Arc<IndexSearcher>, IndexError> {
        let mut slot = self.searcher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(IndexSearcher::open(&self.dir)?);
        *slot = Some(s.clone());
        Ok(s)
    }

    /// The searcher, reloaded to what is committed now.
    fn current(&self) -> Result<Arc<IndexSearcher>, IndexError> {
        self.searcher().and_then(|s| s.reload().map(|()| s))
    }

    /// [`Api::current`], or the `503` answer saying why there is none.
    fn current_or_503(&self) -> Result<Arc<IndexSearcher>, (StatusCode, Vec<u8>)> {
        self.current().map_err(|e| {
            fail(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": e.to_string()}),
            )
        })
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn fail(status: StatusCode, v: &Value) -> (StatusCode, Vec<u8>) {
    (status, json_bytes(v))
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

/// The hits as JSON, written one by one until the answer would pass
/// `budget` bytes; then `truncated` says where it stopped and why.
fn search(
    s: &IndexSearcher,
    p: &Params,
    deadline: Deadline,
    budget: usize,
) -> Result<Vec<u8>, Bad> {
    let req = p.request(true, deadline)?;
    let context = p.number("context", MAX_CONTEXT)?.unwrap_or(0);
    let before = p.number("before", MAX_CONTEXT)?.unwrap_or(context);
    let after = p.number("after", MAX_CONTEXT)?.unwrap_or(context);
    let total = s.count(&req)?;
    let mut hl = s.highlighter(&req)?;
    let mut hits = s.hits(&req)?;
    let asked = hits.remaining();
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"query\":");
    out.extend(json_bytes(&Value::String(req.query.clone())));
    out.extend_from_slice(format!(",\"count\":{total},\"hits\":[").as_bytes());
    // Room for the closing and the `truncated` note.
    let budget = budget.saturating_sub(512);
    let mut given = 0usize;
    let mut truncated = false;
    // One event at a time is read, with its context, within what is left.
    for h in hits.by_ref() {
        let h = h?;
        let room = budget.saturating_sub(out.len());
        if h.body.len() > room {
            truncated = true;
            break;
        }
        let ctx = if before + after > 0 {
            Some(s.context(
                &h,
                before,
                after,
                room.saturating_sub(h.body.len()),
                &req.deadline,
            )?)
        } else {
            None
        };
        let hit = json_bytes(&hit_json(&h, &hl.ranges(&h.body), ctx.as_ref()));
        if out.len() + hit.len() + 1 > budget {
            truncated = true;
            break;
        }
        if given > 0 {
            out.push(b',');
        }
        out.extend(hit);
        given += 1;
    }
    out.push(b']');
    if truncated {
        let note = json!({
            "hits": given,
            "limit_bytes": budget + 512,
            "reason": format!(
                "the answer reached its limit of {} bytes after {given} of {asked} hits; ask for fewer (limit, context) or narrow the query",
                budget + 512,
            ),
        });
        out.extend_from_slice(b",\"truncated\":");
        out.extend(json_bytes(&note));
    }
    out.push(b'}');
    Ok(out)
}

fn histogram(s: &IndexSearcher, p: &Params, deadline: Deadline) -> Result<Vec<u8>, Bad> {
    let req = p.request(false, deadline)?;
    let bucket_text = p.get("bucket").unwrap_or("1m");
    let bucket = rill_index::time::parse_span(bucket_text).ok_or_else(|| {
        Bad::Param(format!(
            "bucket: expected a duration like 10s, 1m, 1h or 1d, got {bucket_text:?}"
        ))
    })?;
    let buckets = s.histogram(&req, bucket)?;
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    Ok(json_bytes(
        &json!({ "query": req.query, "bucket": bucket_text, "total": total, "buckets": buckets }),
    ))
}

/// Decoded query-string parameters.
struct Params(Vec<(String, String)>);

/// A request refused before any work: its status and why.
type Refusal = (StatusCode, String);

fn refuse((status, why): Refusal) -> Response {
    rill_http::error(status, why)
}

/// The parameters of `query`, each one of `known`: 414 for a query string
/// over [`MAX_QUERY_STRING`], 400 for an unknown or badly encoded
/// parameter.
fn query_params(query: Option<String>, known: &[&str]) -> Result<Params, Refusal> {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY_STRING {
        return Err((
            StatusCode::URI_TOO_LONG,
            format!(
                "query string of {} bytes; expected at most {MAX_QUERY_STRING}",
                query.len()
            ),
        ));
    }
    Params::parse(&query, known).map_err(|e| (StatusCode::BAD_REQUEST, e))
}

/// [`query_params`] of a search endpoint, `saved=NAME` resolved.
fn search_params(query: Option<String>, saved: &Saved) -> Result<Params, Refusal> {
    query_params(query, &KNOWN)?
        .with_saved(saved)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

impl Params {
    fn parse(query: &str, known: &[&str]) -> Result<Params, String> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k)?;
            if !known.contains(&k.as_str()) {
                return Err(format!(
                    "unknown parameter {:?}; expected one of: {}",
                    k.chars().take(64).collect::<String>(),
                    known.join(", ")
                ));
            }
            out.push((k, decode(v)?));
        }
        Ok(Params(out))
    }

    /// `saved=NAME` replaced by `q=` the saved query NAME.
    fn with_saved(mut self, saved: &Saved) -> Result<Params, String> {
        let Some(name) = self.get("saved").map(str::to_owned) else {
            return Ok(self);
        };
        if self.get("q").is_some() {
            return Err("expected q or saved, not both".into());
        }
        let text = saved.get(&name).ok_or_else(|| {
            let known: Vec<&str> = saved.keys().map(String::as_str).collect();
            format!(
                "saved: no query {:?}; saved queries: {}",
                name.chars().take(64).collect::<String>(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        })?;
        self.0.push(("q".into(), text.clone()));
        Ok(self)
    }

    /// The last value of `key`, unless empty.
    fn get(&self, key: &str) -> Option<&str> {
        self.raw(key).filter(|v| !v.is_empty())
    }

    /// The last value of `key`, empty or not.
    fn raw(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str, max: usize) -> Result<Option<usize>, Bad> {
        self.get(key)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| {
                        Bad::Param(format!(
                            "{key}: expected a number from 0 to {max}, got {:?}",
                            v.chars().take(64).collect::<String>()
                        ))
                    })
            })
            .transpose()
    }

    /// The search request these parameters describe.
    fn request(&self, with_limit: bool, deadline: Deadline) -> Result<SearchRequest, Bad> {
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
            deadline,
            commits: None,
            hosts_in: None,
            logs_in: None,
        })
    }
}

const KNOWN: [&str; 14] = [
    "q", "saved", "since", "until", "limit", "host", "log", "order", "context", "before", "after",
    "bucket", "local", "_",
];

/// The config's saved queries, by name (`queries:`).
pub type Saved = Arc<std::collections::BTreeMap<String, String>>;

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
                    .ok_or_else(|| format!("bad percent-encoding at byte {i} of a parameter"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a parameter is not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_names_a_saved_query_and_not_with_q() {
        let saved: Saved =
            Arc::new([("errors".to_owned(), "fields.status:[500 TO 599]".to_owned())].into());
        let p = Params::parse("saved=errors&limit=5", &KNOWN)
            .unwrap()
            .with_saved(&saved)
            .unwrap();
        assert_eq!(p.get("q"), Some("fields.status:[500 TO 599]"));
        let e = Params::parse("saved=nope", &KNOWN)
            .unwrap()
            .with_saved(&saved)
            .err()
            .unwrap();
        assert!(
            e.contains("no query \"nope\"") && e.contains("errors"),
            "{e}"
        );
        let e = Params::parse("saved=errors&q=x", &KNOWN)
            .unwrap()
            .with_saved(&saved)
            .err()
            .unwrap();
        assert!(e.contains("not both"), "{e}");
        let p = Params::parse("q=x", &KNOWN)
            .unwrap()
            .with_saved(&saved)
            .unwrap();
        assert_eq!(p.get("q"), Some("x"));
    }

    #[test]
    fn query_strings_decode_and_unknown_parameters_are_named() {
        assert_eq!(decode("GET+%2Fapi%20x").unwrap(), "GET /api x");
        assert_eq!(decode("caf%C3%A9").unwrap(), "café");
        assert!(decode("%zz").unwrap_err().contains("bad percent-encoding"));
        assert!(decode("%ff").unwrap_err().contains("not UTF-8"));
        let p = Params::parse("q=error&limit=5&since=15m", &KNOWN).unwrap();
        let r = p.request(true, Deadline::default()).ok().unwrap();
        assert_eq!((r.query.as_str(), r.limit), ("error", 5));
        assert!(r.since.is_some());
        let e = Params::parse("qq=x", &KNOWN).err().unwrap();
        assert!(e.starts_with("unknown parameter \"qq\""), "{e}");
        let bad = |q: &str| match Params::parse(q, &KNOWN)
            .unwrap()
            .request(true, Deadline::default())
        {
            Err(Bad::Param(m)) => m,
            _ => panic!("{q} accepted"),
        };
        assert!(bad("limit=lots").starts_with("limit: expected a number"));
        assert!(bad("since=yesterday").starts_with("since: expected a time like"));
        assert!(bad("order=random").starts_with("order: expected newest or oldest"));
        assert!(bad("since=99999999d").starts_with("since: \"99999999d\" reaches further back"));
    }
}
