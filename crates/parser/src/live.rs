//! `GET /live?topic=PATTERN&filter=TEXT`: the live stream as Server-Sent
//! Events for the page: one `data:` JSON object per line (`host`, `log`,
//! `body`, and `dropped`: lines this client lost so far), and `{"dropped":
//! n}` alone when the stream is idle: at once when lines were lost since
//! the page last heard the count (the lines that would have told it are
//! the ones lost), else every [`KEEPALIVE`], which keeps an idle stream
//! open. Each client has a thread subscribed to the streams endpoint like
//! any `rill tail`, and a queue of [`QUEUE`] events: when the page reads
//! slower than lines come, the newest are dropped and counted, never
//! buffered without bound. Lines lost on the bus before this thread read
//! them (the gaps in each topic's sequence numbers) are counted too,
//! whether or not they held the filter's text: a gap cannot say. At most
//! [`MAX_CLIENTS`] at once.
//!
//! Each client reports what it handed to the page and what it lost to the
//! supervisor every [`REPORT_EVERY`] and when it ends, as `rill tail`
//! does (`page-live-<pid>-<n>`), so `rill status`, the page's status tab
//! and `/metrics` (`rill_live_messages_total`, `rill_live_dropped_total`)
//! list it with the other subscribers.
//!
//! The threads log in to a guarded endpoint as the collector's own tools
//! do ([`ClientAuth::for_own_streams`]: the server's CURVE key pair, which
//! the gate always admits, or the first PLAIN user), given the config
//! ([`Streams`]); a login that cannot be read is the stream's `error`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use rill_bus::socket::{self, Role};
use rill_bus::{ClientAuth, Subscriber};
use rill_config::Config;
use rill_proto::{ControlRequest, LineMeta, SubscriberReport, TopicPattern};
use serde_json::json;
use tokio::sync::mpsc;

pub const MAX_CLIENTS: usize = 16;
pub const QUEUE: usize = 1000;
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How often a client tells the supervisor how it fares (as `rill tail`).
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// The longest filter text.
const MAX_FILTER: usize = 1024;

static CLIENTS: AtomicUsize = AtomicUsize::new(0);
/// Numbers the clients of this process, for their report's id.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// One client's place among [`MAX_CLIENTS`], given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        CLIENTS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CLIENTS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        CLIENTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the clients' threads subscribe, how they log in, and where they
/// report.
#[derive(Debug, Clone)]
pub struct Streams {
    endpoint: String,
    /// The login, or why it could not be read.
    login: Result<ClientAuth, String>,
    /// The supervisor's control endpoint; None: no reports.
    control: Option<String>,
}

impl From<&Config> for Streams {
    /// The collector's local stream socket, with its own login.
    fn from(cfg: &Config) -> Streams {
        Streams {
            endpoint: cfg.local_streams_endpoint(),
            login: ClientAuth::for_own_streams(cfg),
            control: Some(cfg.control_endpoint()),
        }
    }
}

impl From<&String> for Streams {
    /// An endpoint alone: no login (an endpoint without a guard), no
    /// reports.
    fn from(endpoint: &String) -> Streams {
        Streams {
            endpoint: endpoint.clone(),
            login: Ok(ClientAuth::default()),
            control: None,
        }
    }
}

/// The stream for `topic` (MQTT wildcards), lines holding `filter` only,
/// from `streams` (a `&Config`: its endpoint and the collector's login).
pub fn stream(streams: impl Into<Streams>, topic: &str, filter: Option<String>) -> Response {
    let pattern = match TopicPattern::parse(topic) {
        Ok(p) => p,
        Err(e) => return rill_http::error(StatusCode::BAD_REQUEST, format!("topic: {e}")),
    };
    if filter.as_ref().is_some_and(|f| f.len() > MAX_FILTER) {
        return rill_http::error(
            StatusCode::BAD_REQUEST,
            format!("filter: expected at most {MAX_FILTER} bytes"),
        );
    }
    let Some(slot) = Slot::take() else {
        return rill_http::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_CLIENTS} live streams are open; close one"),
        );
    };
    let (tx, rx) = mpsc::channel::<bytes::Bytes>(QUEUE);
    let streams = streams.into();
    let topic = pattern.to_string();
    let spawned = std::thread::Builder::new()
        .name("live".into())
        .spawn(move || follow(slot, &streams, &topic, filter.as_deref(), &tx));
    if spawned.is_err() {
        return rill_http::error(StatusCode::SERVICE_UNAVAILABLE, "could not start a stream");
    }
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "text/event-stream")
        .header(axum::http::header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

/// The client's thread: until the client goes away.
fn follow(
    _slot: Slot,
    streams: &Streams,
    topic: &str,
    filter: Option<&str>,
    tx: &mpsc::Sender<bytes::Bytes>,
) {
    let ctx = zmq::Context::new();
    let sub = streams
        .login
        .as_ref()
        .map_err(String::clone)
        .and_then(|auth| {
            Subscriber::connect_with(&ctx, &streams.endpoint, &[topic], auth)
                .map_err(|e| e.to_string())
        });
    let sub = match sub {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.try_send(event(&json!({ "error": e })));
            return;
        }
    };
    let _ = tx.try_send(event(&json!({ "ready": true, "topic": topic })));
    let mut reporter = Reporter::connect(&ctx, streams.control.as_deref(), topic);
    let mut count = Count::default();
    // The dropped count the page last got.
    let mut told: u64 = 0;
    let mut quiet = Instant::now();
    while !tx.is_closed() {
        reporter.tick(&count, false);
        let msg = match sub.recv(Duration::from_millis(200)) {
            Ok(Some(m)) => m,
            Ok(None) => {
                if count.dropped > told || quiet.elapsed() >= KEEPALIVE {
                    match tx.try_send(event(&json!({ "dropped": count.dropped }))) {
                        Ok(()) => {
                            told = count.dropped;
                            quiet = Instant::now();
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
                continue;
            }
            Err(_) => break,
        };
        let [meta, body, ..] = msg.frames.as_slice() else {
            continue;
        };
        let Ok(meta) = serde_json::from_slice::<LineMeta>(meta) else {
            continue;
        };
        count.gaps(&msg.topic, &meta.epoch, meta.seq, meta.lines);
        for (m, line) in meta.split(body) {
            let line = String::from_utf8_lossy(line);
            if filter.is_some_and(|f| !line.contains(f)) {
                continue;
            }
            let e = event(
                &json!({ "host": m.host, "log": m.log, "body": line, "dropped": count.dropped }),
            );
            match tx.try_send(e) {
                Ok(()) => {
                    count.handed += 1;
                    told = count.dropped;
                    quiet = Instant::now();
                }
                Err(mpsc::error::TrySendError::Full(_)) => count.dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    }
    reporter.tick(&count, true);
}

/// What one client handed to the page and lost.
#[derive(Debug, Default)]
struct Count {
    /// Lines put in the page's queue.
    handed: u64,
    /// Lines lost: not read off the bus in time (a gap in their topic's
    /// sequence numbers), or read when the page's queue was full.
    dropped: u64,
    /// Per topic and tap run, the sequence number expected next.
    next: HashMap<(String, String), u64>,
}

impl Count {
    /// A message of `lines` lines, the first numbered `seq`: the lines
    /// skipped before it are lost.
    fn gaps(&mut self, topic: &str, epoch: &str, seq: u64, lines: u64) {
        let key = (topic.to_owned(), epoch.to_owned());
        if let Some(&want) = self.next.get(&key) {
            self.dropped += seq.saturating_sub(want);
        }
        self.next.insert(key, seq + lines.max(1));
    }
}

/// Tells the supervisor (when there is one) how a client fares.
struct Reporter {
    socket: Option<zmq::Socket>,
    report: SubscriberReport,
    last: Option<Instant>,
}

impl Reporter {
    fn connect(ctx: &zmq::Context, control: Option<&str>, topic: &str) -> Reporter {
        let socket = control.and_then(|endpoint| {
            let s = socket::open(ctx, zmq::DEALER, Role::Control).ok()?;
            s.set_linger(0).ok()?;
            socket::connect(&s, endpoint).ok()?;
            Some(s)
        });
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        Reporter {
            socket,
            report: SubscriberReport {
                id: format!("page-live-{}-{n}", std::process::id()),
                topics: vec![topic.to_owned()],
                received: 0,
                dropped: 0,
            },
            last: None,
        }
    }

    /// Reports every [`REPORT_EVERY`], or `now`.
    fn tick(&mut self, count: &Count, now: bool) {
        let Some(socket) = &self.socket else { return };
        // Replies are not needed; drain them.
        while socket.recv_bytes(zmq::DONTWAIT).is_ok() {}
        if !now && self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.report.received = count.handed;
        self.report.dropped = count.dropped;
        if let Ok(json) = serde_json::to_vec(&ControlRequest::SubscriberReport(self.report.clone()))
        {
            // The empty frame is what a REQ socket would send first.
            let _ = socket.send_multipart([&b""[..], &json[..]], zmq::DONTWAIT);
        }
    }
}

fn event(v: &serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("data: {v}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_skipped_in_a_topics_sequence_are_dropped() {
        let mut c = Count::default();
        c.gaps("line/web01/app", "e1", 0, 3);
        c.gaps("line/web01/app", "e1", 3, 2);
        assert_eq!(c.dropped, 0);
        // 5..9 never came.
        c.gaps("line/web01/app", "e1", 10, 1);
        assert_eq!(c.dropped, 5);
        // Another topic, and a restarted tap (a new epoch starting at 0),
        // are counted on their own.
        c.gaps("line/web02/app", "e1", 7, 1);
        c.gaps("line/web01/app", "e2", 0, 1);
        assert_eq!(c.dropped, 5);
        // A message seen again (a reconnect) loses nothing.
        c.gaps("line/web01/app", "e2", 0, 1);
        assert_eq!(c.dropped, 5);
    }
}
