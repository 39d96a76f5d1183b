//! The parser's indexing pattern with many logs: `LOGS` runs (default 400)
//! at `RATE` lines/s (4000) in all, a commit every 500 ms, for `SECONDS`
//! (60); prints RSS every 10 s. `cargo run --release -p rill-index
//! --example many_runs -- LOGS RATE SECONDS`. Not part of the test suite.
use std::time::{Duration, Instant};

use rill_index::IndexWriter;
use rill_proto::{FileId, ParsedEvent};

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn main() {
    let logs: usize = std::env::args().nth(1).map_or(400, |a| a.parse().unwrap());
    let rate: usize = std::env::args().nth(2).map_or(4000, |a| a.parse().unwrap());
    let secs: u64 = std::env::args().nth(3).map_or(60, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let start = Instant::now();
    let mut offsets = vec![0u64; logs];
    let mut n = 0usize;
    let mut next_print = Duration::from_secs(10);
    while start.elapsed() < Duration::from_secs(secs) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as usize;
        while n < due {
            let i = n % logs;
            let body = format!(
                "2026-11-23T05:00:00Z INFO worker-{} request {n} done in 12 ms user=u{}",
                i % 8,
                n % 97
            );
            let end = offsets[i] + body.len() as u64 + 1;
            w.add_event(ParsedEvent {
                ts: chrono::Utc::now(),
                host: format!("h{:03}", i / 2),
                log: if i.is_multiple_of(2) {
                    "app".into()
                } else {
                    "sys".into()
                },
                body,
                fields: Default::default(),
                file_id: FileId {
                    dev: 1,
                    ino: 10 + (i % 2) as u64,
                    fingerprint: 7,
                },
                path: "/var/log/app.log".into(),
                offset: offsets[i],
                end_offset: end,
                parse_error: false,
            })
            .unwrap();
            offsets[i] = end;
            n += 1;
        }
        w.commit().unwrap();
        if start.elapsed() >= next_print {
            println!(
                "{:>4.0} s  {n} lines  RSS {:.0} MB",
                start.elapsed().as_secs_f64(),
                rss_mb()
            );
            next_print += Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
