//! `GET /live?topic=PATTERN&filter=TEXT`: the live stream as Server-Sent
//! Events for the page: one `data:` JSON object per line (`host`, `log`,
//! `body`, and `dropped`: lines this client lost so far because it fell
//! behind). Each client has a thread subscribed to the streams endpoint
//! like any `rill tail`, and a queue of [`QUEUE`] events: when the page
//! reads slower than lines come, the newest are dropped and counted, never
//! buffered without bound. At most [`MAX_CLIENTS`] at once; a comment
//! every [`KEEPALIVE`] keeps an idle stream open.
//!
//! The threads log in to a guarded endpoint as the collector's own tools
//! do ([`ClientAuth::for_own_streams`]: the server's CURVE key pair, which
//! the gate always admits, or the first PLAIN user), given the config
//! ([`Streams`]); a login that cannot be read is the stream's `error`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use rill_bus::{ClientAuth, Subscriber};
use rill_config::Config;
use rill_proto::{LineMeta, TopicPattern};
use serde_json::json;
use tokio::sync::mpsc;

pub const MAX_CLIENTS: usize = 16;
pub const QUEUE: usize = 1000;
const KEEPALIVE: Duration = Duration::from_secs(5);
/// The longest filter text.
const MAX_FILTER: usize = 1024;

static CLIENTS: AtomicUsize = AtomicUsize::new(0);

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

/// Where the clients' threads subscribe, and how they log in.
#[derive(Debug, Clone)]
pub struct Streams {
    endpoint: String,
    /// The login, or why it could not be read.
    login: Result<ClientAuth, String>,
}

impl From<&Config> for Streams {
    /// The collector's local stream socket, with its own login.
    fn from(cfg: &Config) -> Streams {
        Streams {
            endpoint: cfg.local_streams_endpoint(),
            login: ClientAuth::for_own_streams(cfg),
        }
    }
}

impl From<&String> for Streams {
    /// An endpoint alone: no login (an endpoint without a guard).
    fn from(endpoint: &String) -> Streams {
        Streams {
            endpoint: endpoint.clone(),
            login: Ok(ClientAuth::default()),
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
    let mut dropped: u64 = 0;
    let mut quiet = Instant::now();
    while !tx.is_closed() {
        let msg = match sub.recv(Duration::from_millis(200)) {
            Ok(Some(m)) => m,
            Ok(None) => {
                if quiet.elapsed() >= KEEPALIVE {
                    let _ = tx.try_send(bytes::Bytes::from_static(b": keepalive\n\n"));
                    quiet = Instant::now();
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
        for (m, line) in meta.split(body) {
            let line = String::from_utf8_lossy(line);
            if filter.is_some_and(|f| !line.contains(f)) {
                continue;
            }
            let e =
                event(&json!({ "host": m.host, "log": m.log, "body": line, "dropped": dropped }));
            match tx.try_send(e) {
                Ok(()) => quiet = Instant::now(),
                Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

fn event(v: &serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("data: {v}\n\n"))
}
