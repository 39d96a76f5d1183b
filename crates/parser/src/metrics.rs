//! `GET /metrics`: Prometheus's text format, from three places:
//!
//! - the supervisor's status (asked over its control socket at each
//!   scrape, at most [`ASK_WITHIN`]): per host and log the lines and bytes
//!   read, the bytes not yet indexed, whether the host is connected, its
//!   open sessions; per stream subscriber (each `rill tail`, each of the
//!   page's Live streams: they report to it, see crate::live) the messages
//!   it got and lost; per process its restarts. `rill_supervisor_up` says whether it answered;
//!   without it those series are absent;
//! - this process: documents in the index, how long commits and search
//!   requests took (histograms kept since the parser started);
//! - the rules' store: firings per rule and state.
//!
//! Names are in base units with `_total`, `_seconds`, `_bytes`. Counters
//! from the status count since the process that reports them started (a
//! restarted tap starts again from 0: Prometheus's `rate()` takes that as
//! a reset).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rill_config::Config;
use rill_index::IndexSearcher;

/// How long a scrape waits for the supervisor.
const ASK_WITHIN: Duration = Duration::from_secs(2);

type Labels = Vec<(String, String)>;

/// What this process measures as it goes.
pub struct Timings {
    pub commit: Histogram,
    pub search: Histogram,
    /// Ingest requests by HTTP status, and the events accepted.
    pub ingest_requests: Family<Labels, Counter>,
    pub ingest_events: Counter,
}

/// Counts an answered ingest request (and the events it stored).
pub fn count_ingest(status: u16, events: u64) {
    let t = timings();
    t.ingest_requests
        .get_or_create(&labels(&[("status", &status.to_string())]))
        .inc();
    t.ingest_events.inc_by(events);
}

/// The process's timings (made on first use).
pub fn timings() -> &'static Timings {
    static T: OnceLock<Timings> = OnceLock::new();
    T.get_or_init(|| Timings {
        // 1 ms .. ~65 s.
        commit: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        search: Histogram::new(exponential_buckets(0.0005, 2.0, 17)),
        ingest_requests: Family::default(),
        ingest_events: Counter::default(),
    })
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The metrics as Prometheus's text format.
pub fn render(cfg: Option<&Config>, searcher: Option<&IndexSearcher>) -> String {
    let mut r = Registry::default();
    let t = timings();
    r.register(
        "rill_index_commit_seconds",
        "How long the index's commits took",
        t.commit.clone(),
    );
    r.register(
        "rill_search_request_seconds",
        "How long search API requests took",
        t.search.clone(),
    );
    if cfg.is_some_and(|c| c.ingest.is_some()) {
        r.register(
            "rill_ingest_requests",
            "Requests to the ingest endpoint, by HTTP status",
            t.ingest_requests.clone(),
        );
        r.register(
            "rill_ingest_events",
            "Events the ingest endpoint stored",
            t.ingest_events.clone(),
        );
    }
    if let Some(s) = searcher {
        let docs = Gauge::<i64>::default();
        docs.set(i64::try_from(s.documents()).unwrap_or(i64::MAX));
        r.register("rill_index_documents", "Events in the index", docs);
    }
    if let Some(cfg) = cfg {
        status_metrics(&mut r, cfg);
        rule_metrics(&mut r, cfg);
    }
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out
}

fn status_metrics(r: &mut Registry, cfg: &Config) {
    let ctx = zmq::Context::new();
    let report = rill_bus::control::status(&ctx, &cfg.control_endpoint(), ASK_WITHIN);
    let up = Gauge::<i64>::default();
    up.set(i64::from(report.is_ok()));
    r.register(
        "rill_supervisor_up",
        "Whether the supervisor answered this scrape (the series below come from it)",
        up,
    );
    let Ok(report) = report else { return };
    let lines = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    let lag = Family::<Labels, Gauge>::default();
    let host_up = Family::<Labels, Gauge>::default();
    let sessions = Family::<Labels, Gauge>::default();
    for h in &report.hosts {
        host_up
            .get_or_create(&labels(&[("host", &h.host)]))
            .set(i64::from(h.connected));
        if let Some(s) = &h.sessions {
            sessions
                .get_or_create(&labels(&[("host", &h.host)]))
                .set(i64::try_from(s.open).unwrap_or(i64::MAX));
        }
        for l in &h.logs {
            let key = labels(&[("host", &h.host), ("log", &l.log), ("path", &l.path)]);
            lines.get_or_create(&key).inc_by(l.lines_read);
            bytes.get_or_create(&key).inc_by(l.bytes_read);
            if let Some(b) = l.lag_bytes {
                lag.get_or_create(&key)
                    .set(i64::try_from(b).unwrap_or(i64::MAX));
            }
        }
    }
    r.register(
        "rill_lines_read",
        "Lines read by the current tap process",
        lines,
    );
    r.register(
        "rill_bytes_read",
        "Bytes of lines read by the current tap process",
        bytes,
    );
    r.register(
        "rill_index_lag_bytes",
        "Bytes on the server not yet in the index",
        lag,
    );
    r.register(
        "rill_host_up",
        "Whether the host's tap is connected",
        host_up,
    );
    r.register("rill_sessions_open", "Open sessions per host", sessions);

    let received = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    for s in &report.subscribers {
        let key = labels(&[("subscriber", &s.report.id)]);
        received.get_or_create(&key).inc_by(s.report.received);
        dropped.get_or_create(&key).inc_by(s.report.dropped);
    }
    r.register(
        "rill_live_messages",
        "Live messages a stream subscriber reported receiving",
        received,
    );
    r.register(
        "rill_live_dropped",
        "Live messages a stream subscriber reported missing",
        dropped,
    );
    let restarts = Family::<Labels, Counter>::default();
    for c in &report.children {
        restarts
            .get_or_create(&labels(&[("process", &c.name)]))
            .inc_by(u64::from(c.restarts));
    }
    r.register(
        "rill_process_restarts",
        "Restarts of each process the supervisor runs",
        restarts,
    );
    if let Some(g) = &report.streams_guard {
        let refused = Counter::<u64>::default();
        refused.inc_by(g.refused);
        r.register(
            "rill_streams_refused",
            "Stream subscribers the endpoint's guard refused",
            refused,
        );
    }
    if !report.upstreams.is_empty() {
        let up = Family::<Labels, Gauge>::default();
        for u in &report.upstreams {
            up.get_or_create(&labels(&[("upstream", &u.name)]))
                .set(i64::from(u.connected));
        }
        r.register(
            "rill_upstream_up",
            "Whether the upstream collector is connected",
            up,
        );
        r.register(
            "rill_upstream_lines",
            "Lines from each upstream collector, by what became of them",
            lines_by_outcome(
                "upstream",
                report.upstreams.iter().map(|u| {
                    let counts = vec![
                        ("received", u.received),
                        ("forwarded", u.forwarded),
                        ("duplicate", u.duplicates),
                        ("dropped", u.dropped),
                    ];
                    (u.name.as_str(), counts)
                }),
            ),
        );
    }
    if !report.downstreams.is_empty() {
        r.register(
            "rill_downstream_lines",
            "Lines for each downstream collector, by what became of them",
            lines_by_outcome(
                "downstream",
                report.downstreams.iter().map(|d| {
                    let counts = vec![
                        ("sent", d.sent),
                        ("held_back", d.held_back),
                        ("dropped", d.dropped),
                    ];
                    (d.collector.as_str(), counts)
                }),
            ),
        );
    }
}

/// A counter per (`label` value, outcome) of each row's counts.
fn lines_by_outcome<'a>(
    label: &str,
    rows: impl IntoIterator<Item = (&'a str, Vec<(&'static str, u64)>)>,
) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (name, counts) in rows {
        for (outcome, n) in counts {
            family
                .get_or_create(&labels(&[(label, name), ("outcome", outcome)]))
                .inc_by(n);
        }
    }
    family
}

fn rule_metrics(r: &mut Registry, cfg: &Config) {
    if cfg.rules.is_empty() {
        return;
    }
    let Ok(rules) = rill_rules::summary(cfg) else {
        return;
    };
    let firings = Family::<Labels, Counter>::default();
    for rule in &rules {
        let name = rule["rule"].as_str().unwrap_or_default();
        if let Some(by) = rule["firings"].as_object() {
            for (state, n) in by {
                firings
                    .get_or_create(&labels(&[("rule", name), ("status", state)]))
                    .inc_by(n.as_u64().unwrap_or(0));
            }
        }
    }
    r.register(
        "rill_rule_firings",
        "Firings of each rule held in its store, by state",
        firings,
    );
}
