//! Time to searchable: marker lines written into a steady stream of lines
//! on the (loopback) server; each is looked for with `rill search --count`
//! until it is found, and the time from its write() to the first search
//! that returned it is recorded. The resolution is one `rill search` run
//! (printed with the results).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use rill_e2e::OneHost;

use crate::stats::{ms, Samples};
use crate::workload;

#[derive(clap::Args)]
pub struct Args {
    /// Background lines per second around the markers.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Markers per second.
    #[arg(long, default_value_t = 5)]
    pub markers: u64,
    /// How long to write.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let h = OneHost::running(&["app"]);
    let path = h.file("app");
    // The index answers at all (a first commit happened).
    let t = Instant::now();
    h.append("app", b"warmup searchwarmup\n");
    while h.rill.count("searchwarmup", &[]) != Some(1) {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the warm-up line was not searchable within 30 s");
        }
    }

    let total = a.markers * a.seconds;
    let written: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; total as usize]));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let written = written.clone();
        let done = done.clone();
        let (rate, markers) = (a.rate, a.markers);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        std::thread::spawn(move || -> std::io::Result<()> {
            let start = Instant::now();
            let (mut lines, mut marks) = (0u64, 0u64);
            let mut batch = String::new();
            while marks < total {
                let s = start.elapsed().as_secs_f64();
                let due_lines = (s * rate as f64) as u64;
                batch.clear();
                for n in lines..due_lines {
                    batch.push_str(&workload::line(n));
                }
                lines = lines.max(due_lines);
                let due_marks = ((s * markers as f64) as u64).min(total);
                let first_mark = marks;
                for m in marks..due_marks {
                    batch.push_str(&format!("marker line searchmark{m:06}\n"));
                }
                marks = marks.max(due_marks);
                if !batch.is_empty() {
                    let now = Instant::now();
                    file.write_all(batch.as_bytes())?;
                    let mut w = written.lock().unwrap();
                    for m in first_mark..marks {
                        w[m as usize] = Some(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        })
    };

    let mut found: Vec<Option<Duration>> = vec![None; total as usize];
    let mut searches = Vec::new();
    let deadline_after_writing = Duration::from_secs(30);
    let mut writing_ended: Option<Instant> = None;
    let mut next = 0usize;
    while next < total as usize {
        if done.load(Ordering::SeqCst) {
            let e = *writing_ended.get_or_insert_with(Instant::now);
            if e.elapsed() > deadline_after_writing {
                break;
            }
        }
        let Some(w) = written.lock().unwrap()[next] else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let q = Instant::now();
        let hit = h.rill.count(&format!("searchmark{next:06}"), &[]) == Some(1);
        let now = Instant::now();
        searches.push(now - q);
        if hit {
            found[next] = Some(now.saturating_duration_since(w));
            next += 1;
        }
    }
    writer.join().expect("writer")?;
    let missing = found.iter().filter(|f| f.is_none()).count();
    let samples = Samples::new(found.into_iter().flatten().collect());
    let search = Samples::new(searches);
    println!(
        "searchable rate={}/s markers={} found={} missing={missing} p50={} p99={} max={} (one rill search: p50 {})",
        a.rate,
        total,
        samples.len(),
        ms(samples.percentile(50.0)),
        ms(samples.percentile(99.0)),
        ms(samples.max()),
        ms(search.percentile(50.0)),
    );
    Ok(())
}
