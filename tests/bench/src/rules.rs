//! Write-to-firing latency of a rule: marker lines in a steady stream of
//! lines on the (loopback) server, an `any` rule on the markers with a
//! command action; from each marker's write() (wall clock) to its firing
//! being queued on disk (`fired_at`) and to its command starting
//! (`started_at` of the action), both from `rill rules history`.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use rill_e2e::OneHost;

use crate::stats::{ms, Samples};
use crate::workload;

#[derive(clap::Args)]
pub struct Args {
    /// Background lines per second around the markers.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Markers (matching lines) per second.
    #[arg(long, default_value_t = 10)]
    pub markers: u64,
    /// How long to write.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let h = OneHost::new(&["app"]);
    h.rill.append_config(
        "rules:\n  marks:\n    query: rulemark\n    kind: any\n    actions:\n      - command: [/bin/true]\n",
    );
    let h = OneHost::start(h, &["app"]);
    let path = h.file("app");
    // The rules run (a first firing went through).
    h.append("app", b"rulemark warmup\n");
    let t = Instant::now();
    while history(&h)?.len() != 1 {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the warm-up firing did not happen within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let total = a.markers * a.seconds;
    let mut written: Vec<DateTime<Utc>> = Vec::with_capacity(total as usize);
    let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
    let start = Instant::now();
    let (mut lines, mut marks) = (0u64, 0u64);
    let mut batch = String::new();
    while marks < total {
        let s = start.elapsed().as_secs_f64();
        let due_lines = (s * a.rate as f64) as u64;
        batch.clear();
        for n in lines..due_lines {
            batch.push_str(&workload::line(n));
        }
        lines = lines.max(due_lines);
        let due_marks = ((s * a.markers as f64) as u64).min(total);
        for m in marks..due_marks {
            batch.push_str(&format!("marker rulemark n{m}\n"));
        }
        if !batch.is_empty() {
            let now: DateTime<Utc> = SystemTime::now().into();
            file.write_all(batch.as_bytes())?;
            written.extend((marks..due_marks).map(|_| now));
        }
        marks = marks.max(due_marks);
        std::thread::sleep(Duration::from_millis(2));
    }

    // Every marker's firing done, or 60 s.
    let t = Instant::now();
    let mut fired = history(&h)?;
    while fired.iter().filter(|f| f["status"] == "success").count() < total as usize + 1
        && t.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(200));
        fired = history(&h)?;
    }
    let time = |v: &serde_json::Value| -> Option<DateTime<Utc>> { v.as_str()?.parse().ok() };
    let (mut queued, mut started) = (Vec::new(), Vec::new());
    for f in &fired {
        let body = f["matches"][0]["body"].as_str().unwrap_or_default();
        let Some(n) = body
            .strip_prefix("marker rulemark n")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let w = written[n];
        let since = |t: DateTime<Utc>| (t - w).to_std().unwrap_or_default();
        if let Some(t) = time(&f["fired_at"]) {
            queued.push(since(t));
        }
        if let Some(t) = time(&f["actions"][0]["last"]["started_at"]) {
            started.push(since(t));
        }
    }
    let missing = total as usize - queued.len();
    let (q, s) = (Samples::new(queued), Samples::new(started));
    println!(
        "rules rate={}/s markers={total} fired={} missing={missing} queued: p50={} p99={} max={}; command started: p50={} p99={} max={}",
        a.rate,
        q.len(),
        ms(q.percentile(50.0)),
        ms(q.percentile(99.0)),
        ms(q.max()),
        ms(s.percentile(50.0)),
        ms(s.percentile(99.0)),
        ms(s.max()),
    );
    Ok(())
}

fn history(h: &OneHost) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = h
        .rill
        .rill(&["rules", "history", "--json", "--limit", "100000", "marks"]);
    if !out.status.success() {
        bail!(
            "rill rules history: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).context("a history line"))
        .collect()
}
