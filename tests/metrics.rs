//! Issue 22 (metrics): `GET /metrics` on the search API's port, in
//! Prometheus's text format, scraped by a real Prometheus (Debian's
//! `prometheus`) whose own query API sees `rill_lines_read_total` grow.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rill_e2e::*;
use serde_json::Value;

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
