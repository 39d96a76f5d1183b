//! Live latency: a writer appends lines to a file on the (loopback) server at
//! a steady rate, each write() timed; a `rill tail --json` subscriber's
//! stdout is read as it prints, each line timed on arrival.

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::stats::{ms, Samples};
use crate::workload;

#[derive(clap::Args)]
pub struct Args {
    /// Lines per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long to write.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Follow the file on a host whose shell and tools are BusyBox only.
    #[arg(long)]
    pub busybox: bool,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let (h, busybox) = crate::app_host(a.busybox);
    let path = h.file("app");

    let mut tail = crate::rill_tail(&h)?;
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(u64, Instant)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(seq) = v["body"].as_str().and_then(workload::seq_of) {
                if tx.send((seq, at)).is_err() {
                    break;
                }
            }
        }
    });

    let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
    // Warm up until the subscriber sees lines (its subscription is live).
    let warm = Instant::now();
    let mut seq = u64::MAX / 2;
    loop {
        file.write_all(workload::line(seq).as_bytes())?;
        seq += 1;
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
        if warm.elapsed() > Duration::from_secs(20) {
            bail!("rill tail printed nothing within 20 s");
        }
    }
    while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}

    let total = a.rate * a.seconds;
    let mut written: Vec<Instant> = Vec::with_capacity(total as usize);
    let start = Instant::now();
    let mut batch = String::new();
    while (written.len() as u64) < total {
        let due = ((start.elapsed().as_secs_f64() * a.rate as f64) as u64).min(total);
        if due > written.len() as u64 {
            batch.clear();
            for s in written.len() as u64..due {
                batch.push_str(&workload::line(s));
            }
            let now = Instant::now();
            file.write_all(batch.as_bytes())?;
            written.resize(due as usize, now);
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let wrote_in = start.elapsed();

    let mut arrived: Vec<Option<Instant>> = vec![None; total as usize];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < total && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((s, at)) if s < total && arrived[s as usize].replace(at).is_none() => got += 1,
            _ => {}
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();

    let samples = Samples::new(
        arrived
            .iter()
            .zip(&written)
            .filter_map(|(a, w)| a.map(|a| a.saturating_duration_since(*w)))
            .collect(),
    );
    let host = if a.busybox { "busybox" } else { "gnu" };
    println!(
        "latency host={host} rate={}/s lines={} written_in={:.1}s received={} p50={} p99={} max={}",
        a.rate,
        total,
        wrote_in.as_secs_f64(),
        samples.len(),
        ms(samples.percentile(50.0)),
        ms(samples.percentile(99.0)),
        ms(samples.max()),
    );
    drop(h);
    drop(busybox);
    Ok(())
}
