//! A backlog read in one go (a file of 200,000 lines moved onto a followed
//! path) reaches a subscriber that keeps up without a single line dropped:
//! the live path drops for slow subscribers, not because a tap reads a
//! burst faster than the proxy forwards it. And it comes in large messages,
//! not one per SSH packet. Its own test binary, so no other
//! test competes for the CPU with the subscriber.

use std::io::Write;
use std::time::{Duration, Instant};

use rill_e2e::OneHost;
use rill_proto::LineMeta;

const LINES: u64 = 200_000;

#[test]
fn a_burst_of_lines_reaches_a_subscriber_that_keeps_up_without_a_gap() {
    let h = OneHost::running(&["app"]);
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(0).unwrap();
    sub.set_subscribe(b"line/web01/app").unwrap();
    sub.connect(&h.rill.streams).unwrap();
    // Until the subscription is live: a line written now arrives.
    let t = Instant::now();
    loop {
        h.append("app", b"probe\n");
        if sub.poll(zmq::POLLIN, 300).unwrap() > 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no probe line arrived"
        );
    }
    while sub.poll(zmq::POLLIN, 500).unwrap() > 0 {
        sub.recv_multipart(0).unwrap();
    }

    let big = h.remote.path.join("big.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    for n in 0..LINES {
        writeln!(
            f,
            "burst line {n:06} GET /api/items/{} HTTP/1.1 200 512 \"-\" \"bench/1.0\"",
            n % 977
        )
        .unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    std::process::Command::new("chmod")
        .arg("644")
        .arg(&big)
        .status()
        .unwrap();
    std::fs::rename(&big, h.file("app")).unwrap();

    let mut got = 0u64;
    let mut bodies_in_order = true;
    let mut last_seq: Option<u64> = None;
    let mut gaps = 0u64;
    // Body bytes in all, and in messages larger than one read of the tap
    // (64 KiB) or SSH packet (32 KiB) could make.
    let (mut bytes, mut in_large) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < LINES && Instant::now() < deadline {
        if sub.poll(zmq::POLLIN, 1_000).unwrap() == 0 {
            continue;
        }
        while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
            let meta: LineMeta = serde_json::from_slice(&frames[1]).unwrap();
            bytes += frames[2].len();
            if frames[2].len() > 64 * 1024 {
                in_large += frames[2].len();
            }
            for (m, body) in meta.split(&frames[2]) {
                if let Some(prev) = last_seq {
                    gaps += m.seq - prev - 1;
                }
                last_seq = Some(m.seq);
                let want = format!("burst line {got:06} ");
                bodies_in_order &= body.starts_with(want.as_bytes());
                got += 1;
            }
        }
    }
    // The index yields the CPU to the live path: every thread of the parser
    // (tantivy's included) runs at `index.nice` (10 by default), the tap at 0.
    let parser = h.rill.pid_of("parser");
    let tap = h.rill.pid_of("ssh_tap");
    let parser_nice = thread_niceness(parser);
    assert!(
        parser_nice.len() > 3 && parser_nice.iter().all(|&n| n == 10),
        "the parser's threads run at {parser_nice:?}"
    );
    assert!(
        thread_niceness(tap).iter().all(|&n| n == 0),
        "the tap's threads run at {:?}",
        thread_niceness(tap)
    );
    assert_eq!(gaps, 0, "the live stream skipped {gaps} lines");
    assert_eq!(got, LINES, "{got} of {LINES} lines arrived");
    assert!(bodies_in_order, "lines arrived out of order");
    assert!(
        in_large * 2 > bytes,
        "only {in_large} of {bytes} bytes of the backlog came in messages over 64 KiB"
    );
    // And the index has them all too.
    let t = Instant::now();
    while h.rill.count("burst", &[]) != Some(LINES) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "index holds {:?} of {LINES} burst lines",
            h.rill.count("burst", &[])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The niceness of each thread of `pid`, as `ps -L -o ni` shows it.
fn thread_niceness(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        // A thread that ended since the listing has no niceness left.
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        // Field 19; the fields after the command's closing parenthesis
        // start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        out.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    out
}
