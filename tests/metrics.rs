//! Issue 22 (metrics): `GET /metrics` on the search API's port, in
//! Prometheus's text format, scraped by a real Prometheus (Debian's
//! `prometheus`) whose own query API sees `rill_lines_read_total` grow;
//! `rill_sessions_open` follows a session opened and deleted; a page's
//! Live stream that falls behind reports what it got and lost
//! (`rill_live_messages_total`, `rill_live_dropped_total`), and tells the
//! page the count with no line after the lost ones.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rill_e2e::session::{host_with_sessions, served, Kind};
use rill_e2e::*;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(60);

/// A Prometheus scraping `127.0.0.1:target/metrics` every second, on a
/// port of its own; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: rill\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (tests/install-deps.sh installs it)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's first series.
    fn value(&self, query: &str) -> Option<f64> {
        let (status, v) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", url_encode(query)),
        )?;
        if status != 200 {
            return None;
        }
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_lines_read_growing() {
    let h = OneHost::running(&["app"]);
    let port = h.rill.search_port;
    h.append("app", "a line\n".repeat(100).as_bytes());
    assert!(h.rill.wait_count("line", &[], 100, WITHIN).is_some());

    // The endpoint itself: the text format, every family the issue names
    // (the ones with series here), once the taps' status (every second)
    // counted the lines.
    let names = [
        "rill_lines_read_total{host=\"web01\",log=\"app\",path=",
        "rill_bytes_read_total{host=\"web01\",log=\"app\",path=",
        "rill_index_lag_bytes{host=\"web01\",log=\"app\",path=",
        "rill_host_up{host=\"web01\"} 1",
        "rill_index_documents 100",
        "rill_index_commit_seconds_bucket",
        "rill_search_request_seconds_count",
        "rill_process_restarts_total{process=\"parser\"} 0",
        "rill_supervisor_up 1",
    ];
    let mut text = String::new();
    let complete = wait_until(WITHIN, || {
        let Some((200, Value::String(t))) = http_get(port, "/metrics") else {
            return false;
        };
        text = t;
        names.iter().all(|n| text.contains(n)) && text.contains("} 100\n")
    });
    assert!(complete, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    // A real Prometheus scrapes it and sees the counter grow.
    let prom = Prometheus::start(port);
    let q = "sum(rill_lines_read_total{job=\"rill\"})";
    assert!(
        wait_until(WITHIN, || prom.value(q) == Some(100.0)),
        "prometheus never saw 100 lines: {:?}",
        prom.value(q)
    );
    h.append("app", "another line\n".repeat(50).as_bytes());
    assert!(
        wait_until(WITHIN, || prom.value(q) == Some(150.0)),
        "prometheus never saw 150 lines: {:?}",
        prom.value(q)
    );
    assert_eq!(
        prom.value("sum(rill_bytes_read_total)"),
        Some(100.0 * 7.0 + 50.0 * 13.0)
    );
    assert_eq!(prom.value("up{job=\"rill\"}"), Some(1.0));
}

/// The `/metrics` text, once it has a line starting with `start` and
/// ending with ` value` (60 s); panics with the text otherwise.
fn wait_metric(port: u16, start: &str, value: u64) -> String {
    let mut text = String::new();
    let found = wait_until(WITHIN, || {
        let Some((200, Value::String(t))) = http_get(port, "/metrics") else {
            return false;
        };
        text = t;
        text.lines()
            .any(|l| l.starts_with(start) && l.ends_with(&format!(" {value}")))
    });
    assert!(found, "no {start}... {value}:\n{text}");
    text
}

#[test]
fn open_sessions_are_counted_per_host() {
    let h = host_with_sessions("sessions: {max: 2, pool: 1}");
    let port = h.rill.search_port;
    let mut client = served(&h, Kind::Req);
    let open = "rill_sessions_open{host=\"web01\"}";
    wait_metric(port, open, 0);
    let created = client.call("create_session", json!({}));
    assert_eq!(created["status"], "ok", "{created}");
    wait_metric(port, open, 1);
    let id = created["session_id"].as_str().unwrap();
    let deleted = client.call("delete_session", json!({ "session_id": id }));
    assert_eq!(deleted["status"], "ok", "{deleted}");
    wait_metric(port, open, 0);
}

/// `GET /live` read as the page's EventSource reads it, as slowly as the
/// test likes: nothing is read between calls.
struct LiveReader {
    lines: BufReader<TcpStream>,
    /// What a read that timed out left of a line.
    line: String,
}

impl LiveReader {
    fn open(port: u16, topic: &str) -> LiveReader {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            s,
            "GET /live?topic={} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            url_encode(topic)
        )
        .unwrap();
        LiveReader {
            lines: BufReader::new(s),
            line: String::new(),
        }
    }

    /// The next event's JSON, or None if none came within `within`.
    fn next(&mut self, within: Duration) -> Option<Value> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            // A read that times out may have taken part of a line: kept.
            match self.lines.read_line(&mut self.line) {
                Ok(0) => panic!("the stream ended"),
                Ok(_) if self.line.ends_with('\n') => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(data) = line.strip_prefix("data: ") {
                        return Some(serde_json::from_str(data).unwrap());
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the stream: {e}"),
            }
        }
        None
    }
}

#[test]
fn a_live_stream_that_falls_behind_counts_what_it_lost() {
    let h = OneHost::running(&["app"]);
    let port = h.rill.search_port;
    let mut live = LiveReader::open(port, "line/+/app");
    let ready = live.next(WITHIN).expect("an event");
    assert_eq!(ready["ready"], true, "{ready}");
    // The subscription reaches the stream proxy a moment after: probes
    // until one comes; from then on every line comes or is counted.
    let mut got = 0u64;
    let mut n = 0;
    let subscribed = wait_until(WITHIN, || {
        n += 1;
        h.append("app", format!("probe {n}\n").as_bytes());
        let probe = format!("probe {n}");
        let end = Instant::now() + Duration::from_millis(300);
        while let Some(e) = live.next(end.saturating_duration_since(Instant::now())) {
            if e["body"].is_string() {
                got += 1;
            }
            if e["body"] == probe.as_str() {
                return true;
            }
        }
        false
    });
    assert!(subscribed, "no probe came");
    let probes = got;

    // The reader stops reading; lines of 1 KB until the stream drops some
    // (after its queue and the sockets' buffers: ~6 MB here), as its
    // report to the supervisor (every 5 s) says.
    let subscriber = "rill_live_dropped_total{subscriber=\"page-live-";
    let (mut written, dropped) = h.burst_until_live_drops("app");
    assert!(dropped, "no line dropped after {written} lines");
    // One more: lost too, as nothing was read; no line comes after it.
    h.append("app", b"lastline\n");
    written += 1;
    assert!(h.rill.wait_count("lastline", &[], 1, WITHIN).is_some());

    // Reading again: the lines that fitted, then the count of the lost
    // ones on its own, every line written in one or the other.
    let mut last = Value::Null;
    let end = Instant::now() + WITHIN;
    let told = loop {
        let Some(e) = live.next(end.saturating_duration_since(Instant::now())) else {
            break false;
        };
        assert_ne!(e["body"], "lastline");
        if e["body"].is_string() {
            got += 1;
        }
        last = e;
        if last["body"].is_null()
            && last["dropped"]
                .as_u64()
                .is_some_and(|d| d > 0 && got - probes + d == written)
        {
            break true;
        }
    };
    assert!(
        told,
        "{written} written, {} got, last event {last}",
        got - probes
    );
    let lost = last["dropped"].as_u64().unwrap();

    // /metrics has the stream's own counts (handed to the page, lost).
    let text = wait_metric(port, subscriber, lost);
    assert!(
        text.lines().any(|l| {
            l.starts_with("rill_live_messages_total{subscriber=\"page-live-")
                && l.ends_with(&format!(" {got}"))
        }),
        "{got} lines handed over:\n{text}"
    );
}
