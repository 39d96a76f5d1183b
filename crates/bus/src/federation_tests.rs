//! The federation endpoint against real libzmq sockets: a stream proxy,
//! the endpoint on 127.0.0.1 (a port the kernel chose), a publisher on the
//! bus in place of the taps, and downstream collectors: an upstream
//! [`Feed`] as the supervisor runs it, and bare DEALERs saying what a
//! hostile or broken peer would.

use std::time::{Duration, Instant};

use rill_config::hub::Upstream;

use crate::federation::{Federation, FAILED, HELLO, MAX_DOWNSTREAMS};
use crate::proxy::StreamProxy;
use crate::upstream::{shared_seen, Feed};

const WITHIN: Duration = Duration::from_secs(10);

/// A `line/web01/app` message read by `collector` and passed on by `via`,
/// at `offset`; its body is `<collector> <offset>`.
fn line(collector: &str, via: &[&str], offset: u64) -> Vec<Vec<u8>> {
    let meta = serde_json::json!({
        "host": "web01", "log": "app", "path": "/p", "file_id": "1:2:00000003",
        "offset": offset, "seq": offset, "epoch": "e", "read_at": "2026-12-03T10:00:00Z",
        "collector": collector, "via": via,
    });
    vec![
        b"line/web01/app".to_vec(),
        meta.to_string().into_bytes(),
        format!("{collector} {offset}").into_bytes(),
    ]
}

/// Collector `own`: its stream proxy, federation endpoint and a publisher.
struct Hub {
    ctx: zmq::Context,
    bus: zmq::Socket,
    federation: Federation,
    _proxy: StreamProxy,
}

impl Hub {
    fn start(own: &str) -> Hub {
        let ctx = zmq::Context::new();
        let bus_endpoint = "inproc://federation-test-bus";
        let proxy = StreamProxy::start_guarded(&ctx, bus_endpoint, "tcp://127.0.0.1:*", None)
            .expect("proxy");
        let federation = Federation::start(&ctx, "tcp://127.0.0.1:*", None, own).expect("bind");
        let bus = ctx.socket(zmq::PUB).unwrap();
        bus.set_linger(0).unwrap();
        bus.connect(bus_endpoint).unwrap();
        Hub {
            ctx,
            bus,
            federation,
            _proxy: proxy,
        }
    }

    fn publish(&self, frames: &[Vec<u8>]) {
        self.bus
            .send_multipart(frames.iter().map(|f| &f[..]), 0)
            .unwrap();
    }

    /// A feed of collector `own` subscribed to this hub.
    fn feed(&self, own: &str) -> Feed {
        let u = Upstream {
            name: "hub".into(),
            endpoint: self.federation.endpoint().to_owned(),
            topics: vec!["line/#".into()],
            index: false,
            plain: None,
            curve: None,
        };
        Feed::connect(&self.ctx, &u, own, shared_seen()).unwrap()
    }

    /// Publishes probes (offsets from 1 on, read by the hub `by`) until
    /// `feed` has one: the hello and the subscriptions have then arrived.
    fn link(&self, by: &str, feed: &mut Feed) {
        let deadline = Instant::now() + WITHIN;
        for offset in 1.. {
            assert!(Instant::now() < deadline, "nothing reached the feed");
            self.publish(&line(by, &[], offset));
            if feed.next(Duration::from_millis(100)).unwrap().is_some() {
                // Drain the probes still on their way.
                while feed.next(Duration::from_millis(200)).unwrap().is_some() {}
                return;
            }
        }
    }

    /// A bare DEALER connected to the federation endpoint.
    fn dealer(&self) -> zmq::Socket {
        let d = self.ctx.socket(zmq::DEALER).unwrap();
        d.set_linger(0).unwrap();
        d.connect(self.federation.endpoint()).unwrap();
        d
    }

    /// The downstream statuses once `ok` holds for them (refreshed every
    /// second), or when `within` has passed.
    fn statuses_when(
        &self,
        within: Duration,
        ok: impl Fn(&[rill_proto::DownstreamStatus]) -> bool,
    ) -> Vec<rill_proto::DownstreamStatus> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.federation.statuses().lock().unwrap().clone();
            if ok(&s) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The bodies `feed` passes on until (and with) `last`.
fn bodies_until(feed: &mut Feed, last: &str) -> Vec<String> {
    let deadline = Instant::now() + WITHIN;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Some(frames) = feed.next(Duration::from_millis(100)).unwrap() {
            let body = String::from_utf8_lossy(&frames[2]).into_owned();
            got.push(body.clone());
            if body == last {
                return got;
            }
        }
    }
    panic!("{last} never came; got {got:?}");
}

/// The answer to one message from `d`, within [`WITHIN`].
fn answer(d: &zmq::Socket, frames: &[&[u8]]) -> Vec<Vec<u8>> {
    d.send_multipart(frames, 0).unwrap();
    assert!(
        d.poll(zmq::POLLIN, WITHIN.as_millis() as i64).unwrap() > 0,
        "no answer to {frames:?}"
    );
    d.recv_multipart(0).unwrap()
}

#[test]
fn a_downstream_is_sent_what_it_asked_for_except_what_came_from_it() {
    let hub = Hub::start("a");
    let mut b = hub.feed("b");
    hub.link("a", &mut b);

    hub.publish(&line("a", &[], 1000)); // read by the hub: sent
    hub.publish(&line("b", &[], 1001)); // b's own: held back
    hub.publish(&line("c", &["b"], 1002)); // b passed it on: held back
    hub.publish(&line("c", &["b", "a"], 1003)); // likewise
    hub.publish(&line("c", &["d"], 1004)); // by way of d: sent
    hub.publish(&[b"ping/web01".to_vec(), b"{}".to_vec()]); // not asked for
    hub.publish(&line("a", &[], 2000));
    assert_eq!(
        bodies_until(&mut b, "a 2000"),
        ["a 1000", "c 1004", "a 2000"]
    );

    let s = hub.statuses_when(WITHIN, |s| s.len() == 1 && s[0].held_back == 3);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0].collector.as_str(), &s[0].topics[..], s[0].connections),
        ("b", &["line/#".to_owned()][..], 1)
    );
    assert_eq!((s[0].held_back, s[0].dropped), (3, 0));
    assert!(s[0].sent >= 3, "{s:?}");
    let up = b.status().lock().unwrap().clone();
    assert_eq!((up.connected, up.duplicates), (true, 0), "{up:?}");
}

#[test]
fn a_hello_that_cannot_be_read_is_answered_failed_and_the_endpoint_goes_on() {
    let hub = Hub::start("a");
    let d = hub.dealer();
    let bad: [(&[&[u8]], &str); 6] = [
        (&[b"subscribe", b"x", b"[\"line/#\"]"], "expected a hello"),
        (&[HELLO, b"x"], "expected 3 frames"),
        (
            &[HELLO, b"$(reboot)", b"[\"line/#\"]"],
            "expected a collector name",
        ),
        (&[HELLO, b"x", b"[]"], "expected 1 to 32 topic patterns"),
        (
            &[HELLO, b"x", b"{\"a\":1}"],
            "expected the topics as a JSON list",
        ),
        (&[HELLO, b"x", b"[\"line/#/x\"]"], "topic \"line/#/x\""),
    ];
    for (frames, why) in bad {
        let a = answer(&d, frames);
        assert_eq!(a[0], FAILED, "{frames:?}");
        let reason = String::from_utf8_lossy(&a[1]);
        assert!(reason.contains(why), "{frames:?}: {reason}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("line/h{i}/#")).collect();
    let many = serde_json::to_vec(&many).unwrap();
    assert!(
        String::from_utf8_lossy(&answer(&d, &[HELLO, b"x", &many])[1]).contains("expected 1 to 32")
    );
    // A valid hello with a frame over 16 KiB closes that connection
    // (libzmq's maxmsgsize): no answer, and it is not served.
    let long = format!("line/{}/#", "h".repeat(20 << 10));
    let huge = serde_json::to_vec(&[long]).unwrap();
    let big = hub.dealer();
    big.send_multipart([HELLO, b"big", &huge[..]], 0).unwrap();
    assert_eq!(big.poll(zmq::POLLIN, 1_500).unwrap(), 0, "an answer came");
    let s = hub.statuses_when(Duration::from_millis(1_500), |s| !s.is_empty());
    assert!(s.is_empty(), "{s:?}");

    // A real downstream is served all along.
    let mut b = hub.feed("b");
    hub.link("a", &mut b);
    hub.publish(&line("a", &[], 5000));
    assert_eq!(bodies_until(&mut b, "a 5000"), ["a 5000"]);
}

#[test]
fn more_downstreams_than_served_are_refused_one_by_one() {
    let hub = Hub::start("a");
    let dealers: Vec<zmq::Socket> = (0..MAX_DOWNSTREAMS).map(|_| hub.dealer()).collect();
    for (i, d) in dealers.iter().enumerate() {
        d.send_multipart([HELLO, format!("c{i}").as_bytes(), b"[\"line/#\"]"], 0)
            .unwrap();
    }
    let s = hub.statuses_when(WITHIN, |s| s.len() == MAX_DOWNSTREAMS);
    assert_eq!(s.len(), MAX_DOWNSTREAMS);
    let one_more = hub.dealer();
    let a = answer(&one_more, &[HELLO, b"late", b"[\"line/#\"]"]);
    assert_eq!(a[0], FAILED);
    assert!(String::from_utf8_lossy(&a[1]).contains(&format!("at most {MAX_DOWNSTREAMS}")));
    // Those served still get lines.
    let deadline = Instant::now() + WITHIN;
    let first = &dealers[0];
    let mut n = 0;
    while first.poll(zmq::POLLIN, 100).unwrap() == 0 {
        assert!(Instant::now() < deadline, "no line reached c0");
        hub.publish(&line("a", &[], n));
        n += 1;
    }
    assert_eq!(first.recv_multipart(0).unwrap()[0], b"line/web01/app");
}

#[test]
fn a_downstream_that_falls_behind_loses_lines_and_one_gone_keeps_its_counts() {
    let hub = Hub::start("a");
    // Says hello and never reads: its queue fills, the rest is dropped.
    let slow = hub.dealer();
    slow.send_multipart([HELLO, b"slow", b"[\"line/#\"]"], 0)
        .unwrap();
    hub.statuses_when(WITHIN, |s| s.len() == 1);
    let body = vec![b'x'; 1 << 10];
    let deadline = Instant::now() + WITHIN;
    let mut offset = 0;
    let s = loop {
        for _ in 0..1_000 {
            let mut m = line("a", &[], offset);
            m[2].clone_from(&body);
            hub.publish(&m);
            offset += 1;
        }
        let s = hub.statuses_when(Duration::from_millis(1_100), |s| s[0].dropped > 0);
        if s[0].dropped > 0 || Instant::now() > deadline {
            break s;
        }
    };
    assert!(s[0].dropped > 0, "{s:?}");
    assert!(s[0].sent >= 250, "its queue held 250 at least: {s:?}");

    // Its connection closes: forgotten at the next message for it, its
    // counts kept (so /metrics never goes down).
    let before = s[0].clone();
    drop(slow);
    let s = hub.statuses_when(WITHIN, |s| {
        hub.publish(&line("a", &[], 1 << 40));
        s[0].connections == 0
    });
    assert_eq!(s[0].connections, 0, "{s:?}");
    assert!(
        s[0].sent >= before.sent && s[0].dropped >= before.dropped,
        "{s:?}"
    );
}
