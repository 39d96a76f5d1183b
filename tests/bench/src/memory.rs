//! Memory and CPU: lines written at a steady rate on the (loopback) server
//! with a `rill tail` subscriber reading them; every component's RSS and
//! CPU sampled. Then the subscriber stops reading (SIGSTOP) while writing
//! goes on, and RSS is sampled through the stall: it must stay flat.

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rill_e2e::OneHost;

use crate::procs::{self, mb, Proc};
use crate::workload;

#[derive(clap::Args)]
pub struct Args {
    /// Lines per second.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Steady state with a reading subscriber, measured after a warm-up.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// How long the subscriber stops reading.
    #[arg(long, default_value_t = 300)]
    pub stall_seconds: u64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let mut h = OneHost::running(&["app"]);
    let path = h.file("app");
    let supervisor = h.rill.supervisor_pid().context("no supervisor")?;

    let mut tail = crate::rill_tail(&h)?;
    let tail_pid = tail.id();
    let received = Arc::new(AtomicU64::new(0));
    {
        let received = received.clone();
        let stdout = tail.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if line.is_err() {
                    break;
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = stop.clone();
        let written = written.clone();
        let rate = a.rate;
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        std::thread::spawn(move || -> std::io::Result<()> {
            let start = Instant::now();
            let mut n = 0u64;
            let mut batch = String::new();
            while !stop.load(Ordering::SeqCst) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                batch.clear();
                for s in n..due {
                    batch.push_str(&workload::line(s));
                }
                if !batch.is_empty() {
                    file.write_all(batch.as_bytes())?;
                    n = due;
                    written.store(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };

    let sample = || {
        let mut t = procs::tree(supervisor);
        t.extend(procs::one(tail_pid));
        t
    };
    println!(
        "memory rate={}/s steady={} s stall={} s (RSS and CPU per program)",
        a.rate, a.seconds, a.stall_seconds
    );
    // Warm-up: the pipeline reaches its steady state.
    std::thread::sleep(Duration::from_secs(10));
    let before = sample();
    let got_before = received.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut peak: Vec<Proc> = Vec::new();
    while t.elapsed() < Duration::from_secs(a.seconds) {
        std::thread::sleep(Duration::from_secs(5));
        keep_peak(&mut peak, sample());
    }
    let after = sample();
    let secs = t.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed) - got_before;
    let cpu = procs::cpu_percent(&before, &after, secs);
    println!(
        "  steady: {:.0} lines/s reached the subscriber",
        got as f64 / secs
    );
    print_table(&after, &peak, Some(&cpu));

    // The subscriber stops reading.
    kill(tail_pid, "STOP");
    let t = Instant::now();
    let mut series: Vec<(u64, Vec<Proc>)> = Vec::new();
    while t.elapsed() < Duration::from_secs(a.stall_seconds) {
        std::thread::sleep(Duration::from_secs(10));
        series.push((t.elapsed().as_secs(), sample()));
    }
    let stalled_secs = t.elapsed().as_secs_f64();
    kill(tail_pid, "CONT");
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer")?;
    println!(
        "  stalled subscriber, {:.0} s, RSS every 10 s (first .. last, max):",
        stalled_secs
    );
    let names = [
        "ssh_tap",
        "robust_ssh_tap",
        "parser",
        "supervisor",
        "masspinger",
        "rill",
    ];
    for name in names {
        let rss: Vec<u64> = series
            .iter()
            .map(|(_, t)| t.iter().filter(|p| p.name == name).map(|p| p.rss_kib).sum())
            .collect();
        if rss.is_empty() {
            continue;
        }
        println!(
            "    {:<15} {:>9} .. {:>9}  max {:>9}",
            name,
            mb(rss[0]),
            mb(*rss.last().unwrap()),
            mb(*rss.iter().max().unwrap())
        );
    }
    println!("  written {} lines in all", written.load(Ordering::Relaxed));
    let _ = tail.kill();
    let _ = tail.wait();
    h.rill.stop(Duration::from_secs(10));
    Ok(())
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Keeps, per pid, the sample with the highest RSS.
fn keep_peak(peak: &mut Vec<Proc>, now: Vec<Proc>) {
    for p in now {
        match peak.iter_mut().find(|q| q.pid == p.pid) {
            Some(q) if q.rss_kib < p.rss_kib => *q = p,
            Some(_) => {}
            None => peak.push(p),
        }
    }
}

fn print_table(now: &[Proc], peak: &[Proc], cpu: Option<&std::collections::BTreeMap<String, f64>>) {
    let now_by = procs::by_name(now);
    let peak_by = procs::by_name(peak);
    for (name, (n, rss, pss, _)) in &now_by {
        if name == "sshd" || name == "sh" || name.starts_with("kworker") {
            continue;
        }
        let max = peak_by.get(name).map_or(*rss, |e| e.1.max(*rss));
        println!(
            "    {:<15} x{n}  RSS {:>9} (max {:>9})  PSS {:>9}  CPU {}",
            name,
            mb(*rss),
            mb(max),
            mb(*pss),
            cpu.and_then(|c| c.get(name))
                .map_or("-".into(), |c| format!("{c:.1} % of a core"))
        );
    }
}
