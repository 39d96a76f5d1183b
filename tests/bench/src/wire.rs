//! The live path's ceiling without SSH or the index: one thread makes each
//! line's JSON meta and publishes it the way `ssh_tap` does (PUB to the
//! bus, through the supervisor's stream proxy), a SUB on the streams
//! endpoint counts. Whatever the tap reads, it cannot hand it on faster.
//!
//! `--batch N` measures a wire Rill does not have (yet): N consecutive lines
//! per message, one meta for them all (the first line's offset and seq; the
//! others follow), the subscriber counting newlines. It is what batching
//! would buy before anyone designs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rill_bus::proxy::StreamProxy;
use rill_bus::socket::{self, Role};
use rill_proto::{FileId, LineMeta};

use crate::workload;

#[derive(clap::Args)]
pub struct Args {
    /// Lines to publish.
    #[arg(long, default_value_t = 2_000_000)]
    pub lines: u64,
    /// Lines per message (1: today's wire).
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("rill-bench-wire-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bus = format!("ipc://{}/bus.sock", dir.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let streams = format!("tcp://127.0.0.1:{port}");
    let ctx = zmq::Context::new();
    let proxy = StreamProxy::start(&ctx, &bus, &streams)?;
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_rcvhwm(0)?;
    sub.set_subscribe(b"line/web01/app")?;
    sub.connect(&streams)?;
    let lines = a.lines;
    let batch = a.batch.max(1);
    let ready = Arc::new(AtomicBool::new(false));
    let seen = ready.clone();
    let publisher = std::thread::spawn(move || -> anyhow::Result<()> {
        let ctx = zmq::Context::new();
        let live = socket::open(&ctx, zmq::PUB, Role::LiveBus)?;
        socket::connect(&live, &bus)?;
        let mut meta = LineMeta {
            host: "web01".into(),
            log: "app".into(),
            path: "/var/log/app.log".into(),
            file_id: FileId {
                dev: 65024,
                ino: 10010655,
                fingerprint: 3270685568,
            },
            offset: 0,
            seq: 0,
            lines: 1,
            epoch: "0c4ad1a2-43b1-4d3a-9d7e-6a0f0b9a1a11".into(),
            read_at: chrono::Utc::now(),
            partial: false,
            collector: String::new(),
            ndjson: false,
            via: Vec::new(),
        };
        // Probe until the subscription reached the publisher.
        while !seen.load(Ordering::SeqCst) {
            live.send_multipart(["line/web01/app/probe".as_bytes()], 0)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut body = String::new();
        let mut n = 0;
        while n < lines {
            body.clear();
            meta.seq = n;
            meta.read_at = chrono::Utc::now();
            let json = serde_json::to_vec(&meta)?;
            let end = (n + batch).min(lines);
            for k in n..end {
                body.push_str(&workload::line(k));
            }
            meta.offset += body.len() as u64;
            n = end;
            // One line: without its newline, as today; more: newline-ended.
            let frame = if batch == 1 {
                body.trim_end()
            } else {
                &body[..]
            };
            live.send_multipart(
                ["line/web01/app".as_bytes(), &json[..], frame.as_bytes()],
                zmq::DONTWAIT,
            )?;
        }
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    });
    let mut got = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    let mut bytes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < lines {
        if sub.poll(zmq::POLLIN, 5_000)? == 0 && (got > 0 || Instant::now() > deadline) {
            break;
        }
        while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
            if frames[0].ends_with(b"/probe") {
                ready.store(true, Ordering::SeqCst);
                continue;
            }
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            let body = frames.get(2).map_or(&[][..], |b| &b[..]);
            if batch == 1 {
                bytes += body.len() as u64 + 1;
                got += 1;
            } else {
                bytes += body.len() as u64;
                got += memchr::memchr_iter(b'\n', body).count() as u64;
            }
        }
    }
    publisher.join().expect("publisher thread")?;
    proxy.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let Some(first) = first else {
        bail!("nothing arrived");
    };
    let s = last.duration_since(first).as_secs_f64().max(1e-3);
    println!(
        "wire lines={lines} batch={batch} received={got} {:.2} s {:.0} lines/s {:.1} MB/s (meta JSON + PUB -> proxy -> SUB, no SSH, no index)",
        s,
        got as f64 / s,
        bytes as f64 / s / 1e6
    );
    Ok(())
}
