//! What a stream client receives on `line/<host>/<log>`, read with a plain
//! ZeroMQ SUB socket: raw bytes unchanged, long lines split and marked, a
//! last line without newline published (marked partial) after the idle time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rill_e2e::*;
use rill_proto::LineMeta;
use serde_json::Value;

struct Msg {
    meta: Value,
    body: Vec<u8>,
}

/// The lines of the messages received, one at a time (a message may hold
/// several: `LineMeta::split`).
#[derive(Default)]
struct Lines(VecDeque<Msg>);

impl Lines {
    fn next(&mut self, sub: &zmq::Socket, deadline: Duration) -> Option<Msg> {
        let end = Instant::now() + deadline;
        while self.0.is_empty() && Instant::now() < end {
            if sub.poll(zmq::POLLIN, 100).unwrap() == 0 {
                continue;
            }
            let frames = sub.recv_multipart(0).unwrap();
            if frames[0].starts_with(b"line/") {
                let meta: LineMeta = serde_json::from_slice(&frames[1]).unwrap();
                for (m, body) in meta.split(&frames[2]) {
                    self.0.push_back(Msg {
                        meta: serde_json::to_value(&m).unwrap(),
                        body: body.to_vec(),
                    });
                }
            }
        }
        self.0.pop_front()
    }
}

#[test]
fn raw_bytes_long_lines_and_partial_lines() {
    let mut h = OneHost::new(&["app"]);
    h.rill
        .append_config("tap:\n  partial_line_after: 500ms\n  max_line_bytes: 1024\n");
    h.append("app", b"");
    h.rill.start();
    assert!(
        h.rill.wait_following("web01", Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );

    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_subscribe(b"line/web01/app").unwrap();
    sub.set_subscribe(b"status/web01").unwrap();
    sub.connect(&h.rill.streams).unwrap();
    // Subscribed once the tap's periodic status arrives through the proxy.
    let ready = wait_until(Duration::from_secs(15), || {
        sub.poll(zmq::POLLIN, 100).unwrap() > 0
            && sub.recv_multipart(0).unwrap()[0].starts_with(b"status/")
    });
    assert!(ready);
    sub.set_unsubscribe(b"status/web01").unwrap();

    let raw: &[u8] = b"caf\xc3\xa9 \xff\xfe not utf-8";
    let long = vec![b'x'; 2500];
    let mut data = raw.to_vec();
    data.push(b'\n');
    data.extend_from_slice(&long);
    data.push(b'\n');
    data.extend_from_slice(b"no newline yet");
    h.append("app", &data);

    let mut lines = Lines::default();
    let m = lines
        .next(&sub, Duration::from_secs(10))
        .expect("the raw line");
    assert_eq!(m.body, raw, "bytes pass through unchanged");
    assert_eq!(m.meta["offset"], 0);
    assert!(m.meta.get("partial").is_none());

    let start = raw.len() as u64 + 1;
    let pieces: Vec<Msg> = (0..3)
        .map(|_| lines.next(&sub, Duration::from_secs(10)).expect("a piece"))
        .collect();
    let sizes: Vec<usize> = pieces.iter().map(|p| p.body.len()).collect();
    assert_eq!(
        sizes,
        [1024, 1024, 452],
        "split at max_line_bytes, nothing dropped"
    );
    assert_eq!(pieces[0].meta["offset"].as_u64(), Some(start));
    assert_eq!(pieces[1].meta["offset"].as_u64(), Some(start + 1024));
    assert_eq!(pieces[2].meta["offset"].as_u64(), Some(start + 2048));
    assert_eq!(pieces[0].meta["partial"], true);
    assert_eq!(pieces[1].meta["partial"], true);
    assert!(
        pieces[2].meta.get("partial").is_none(),
        "the last piece ends the line"
    );

    let written = Instant::now();
    let tail = lines
        .next(&sub, Duration::from_secs(10))
        .expect("the unterminated line, after the idle time");
    assert!(
        written.elapsed() >= Duration::from_millis(400),
        "not before the idle time"
    );
    assert_eq!(tail.body, b"no newline yet");
    assert_eq!(tail.meta["partial"], true);
    let tail_offset = start + 2501;
    assert_eq!(tail.meta["offset"].as_u64(), Some(tail_offset));

    h.append("app", b" and the rest\n");
    let rest = lines.next(&sub, Duration::from_secs(10)).expect("the rest");
    assert_eq!(rest.body, b" and the rest");
    assert_eq!(rest.meta["offset"].as_u64(), Some(tail_offset + 14));
}
