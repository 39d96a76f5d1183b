//! Events received over HTTP (`ingest:`): `POST /ingest/<log>` with plain
//! lines, NDJSON or an S3-style notification. Each event is a line of host
//! `<source>` (the name of the request's bearer token, or
//! [`IngestSettings::LOCAL_SOURCE`] on a loopback listener without tokens)
//! and log `<log>`, stored in the write-ahead log like a tap's lines, so it
//! is indexed, published on `parsed/<source>/<log>` and seen by rules.
//!
//! ```text
//! request --guard (allowlist 403, token 401)--> body <= max_body (413)
//!   -> decode.rs: every line checked first (400 names the line)
//!   -> records named by the Idempotency-Key (decode::file_id)
//!   -> the parser's main thread appends them and syncs the log (Batch)
//!   -> 200 {"accepted": N}, and line/<source>/<log> published live
//! ```
//!
//! Exactly once per request: the events of a request are named by the
//! request's source, log and `Idempotency-Key`, and the index holds a name
//! once, so a retry (after a timeout, a 503, a crash of Rill) stores them
//! again under the same names and the index keeps one of each. A `200`
//! comes only once the events are synced to disk. A key reused with
//! another body is refused (422) while the first is remembered (the last
//! [`REMEMBERED`] keys).

pub mod decode;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use rill_bus::upstream::Feeds;
use rill_config::hub::{IngestSettings, Tokens};
use rill_config::Config;
use rill_http::{Caller, FileWatch, Guard, HttpServer, Limits, Settings, Tls, Work};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::wal::Wal;
use decode::{Events, Kind, Origin};

/// Requests waiting for the main thread at most; more are answered 503.
pub const QUEUE: usize = 64;
/// Idempotency keys remembered with their body's digest.
pub const REMEMBERED: usize = 10_000;
/// Bodies read at once (each up to `max_body`).
const UPLOADS: usize = 4;
/// How long a body may take to arrive.
const UPLOAD_WITHIN: Duration = Duration::from_secs(60);
/// The longest `Idempotency-Key`.
const MAX_KEY: usize = 200;
/// How often a listener that could not start is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Upstream messages stored as one batch at most.
const UPSTREAM_BATCH: usize = 256;

/// Records for the write-ahead log, from a request (which waits for
/// `done`: sent once they are synced) or an upstream (which does not).
pub struct Batch {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    pub done: Option<SyncSender<()>>,
}

/// The main thread's side: appends waiting batches to the log (at most
/// `max` of them), keeping their `done` for after the next sync.
pub fn append(
    rx: &Receiver<Batch>,
    wal: &mut Wal,
    waiting: &mut Vec<SyncSender<()>>,
    max: usize,
) -> std::io::Result<()> {
    for _ in 0..max {
        let Ok(b) = rx.try_recv() else { break };
        // A record the log cannot hold (over its size limit) refuses its
        // batch, not the parser: the request is answered 503 (its waiter
        // is dropped). Checked before anything of the batch is written.
        if let Some(len) = b
            .records
            .iter()
            .map(|(m, l)| m.len() + l.len())
            .find(|&n| n > crate::wal::MAX_RECORD_DATA)
        {
            warn!(
                bytes = len,
                "a received record is over the write-ahead log's limit; its batch is refused"
            );
            continue;
        }
        for (meta, lines) in &b.records {
            wal.append(0, meta, lines)?;
        }
        waiting.extend(b.done);
    }
    Ok(())
}

/// What every request shares.
struct Shared {
    settings: IngestSettings,
    collector: String,
    tx: SyncSender<Batch>,
    live: Mutex<Live>,
    remembered: Mutex<Remembered>,
    uploads: Arc<Semaphore>,
}

/// The live publisher and each topic's next sequence number.
struct Live {
    socket: zmq::Socket,
    seq: HashMap<String, u64>,
}

/// Idempotency keys already stored: (source, log, key) -> (digest, events).
#[derive(Default)]
struct Remembered {
    keys: HashMap<(String, String, String), ([u8; 32], usize)>,
    order: VecDeque<(String, String, String)>,
}

impl Remembered {
    fn insert(&mut self, k: (String, String, String), v: ([u8; 32], usize)) {
        if self.keys.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }
}

/// The ingest listener, started again if it could not start or stopped.
pub struct Keeper {
    shared: Arc<Shared>,
    server: Option<HttpServer>,
    next_try: Instant,
    /// The TLS and tokens files as the running listener read them.
    files: FileWatch,
}

/// The TLS and tokens files of the `ingest:` block.
fn watched(s: &IngestSettings) -> FileWatch {
    let tls = s.tls.iter().flat_map(|t| [t.cert.clone(), t.key.clone()]);
    FileWatch::new(tls.chain(s.tokens_file.clone()).collect())
}

impl Keeper {
    pub fn new(
        cfg: &Config,
        settings: &IngestSettings,
        ctx: &zmq::Context,
        tx: SyncSender<Batch>,
    ) -> anyhow::Result<Keeper> {
        let socket = rill_bus::socket::open(ctx, zmq::PUB, rill_bus::socket::Role::LiveBus)?;
        rill_bus::socket::connect(&socket, &cfg.bus_endpoint())?;
        let mut keeper = Keeper {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                collector: cfg.collector.clone(),
                tx,
                live: Mutex::new(Live {
                    socket,
                    seq: HashMap::new(),
                }),
                remembered: Mutex::default(),
                uploads: Arc::new(Semaphore::new(UPLOADS)),
            }),
            server: None,
            next_try: Instant::now(),
            files: watched(settings),
        };
        keeper.tick();
        Ok(keeper)
    }

    /// Starts the listener if it is not running and it is time to try;
    /// restarts it when its TLS or tokens files changed (a removed token
    /// is refused within [`FileWatch::EVERY`]), unless the new files
    /// cannot be used.
    pub fn tick(&mut self) {
        if self.server.as_ref().is_some_and(HttpServer::is_running) {
            if self.files.changed() {
                self.reload();
            }
            return;
        }
        if Instant::now() < self.next_try {
            return;
        }
        self.next_try = Instant::now() + RETRY;
        self.files.mark();
        match settings(&self.shared).and_then(|s| bind(&self.shared, s)) {
            Ok(s) => {
                info!(addr = %s.local_addr(), "ingest listening");
                self.server = Some(s);
            }
            Err(e) => {
                self.server = None;
                warn!(error = %e, "the ingest endpoint could not start; trying again in 10s");
            }
        }
    }

    /// A new listener on the files as they are now, if they can be used;
    /// the one running goes on otherwise.
    fn reload(&mut self) {
        match settings(&self.shared) {
            Ok(new) => {
                info!("ingest.tls or ingest.tokens_file changed; restarting the ingest endpoint with them");
                // The port is free once the old server is dropped.
                self.server = None;
                match bind(&self.shared, new) {
                    Ok(s) => self.server = Some(s),
                    Err(e) => {
                        self.next_try = Instant::now() + RETRY;
                        warn!(error = %e, "the ingest endpoint could not start; trying again in 10s");
                    }
                }
            }
            Err(e) => warn!(
                error = %e,
                "ingest.tls or ingest.tokens_file changed but cannot be used; the endpoint goes on with what it read before"
            ),
        }
    }

    /// Where it listens, when it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(HttpServer::local_addr)
    }
}

/// The listener's settings from the files as they are now.
fn settings(shared: &Shared) -> anyhow::Result<Settings> {
    let s = &shared.settings;
    let tls = s.tls.as_ref().map(Tls::from_files).transpose()?;
    let tokens = s
        .tokens_file
        .as_deref()
        .map(Tokens::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("ingest.tokens_file: {e}"))?;
    let mut guard = Guard::new("ingest");
    guard.allow = s.allow.clone();
    guard.tokens = tokens;
    let limits = Limits {
        // A request's wait for the disk.
        request_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    Ok(Settings {
        limits,
        tls,
        guard: Some(guard),
    })
}

fn bind(shared: &Arc<Shared>, settings: Settings) -> anyhow::Result<HttpServer> {
    let shared = Arc::clone(shared);
    let listen = shared.settings.listen;
    Ok(HttpServer::bind_with(
        "ingest",
        listen,
        settings,
        move |work| {
            Router::new()
                .route("/ingest/{log}", post(ingest))
                .with_state((shared, work))
        },
    )?)
}

type St = (Arc<Shared>, Work);

async fn ingest(
    State((shared, work)): State<St>,
    Path(log): Path<String>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refuse = |status: StatusCode, message: String| {
        warn!(%log, status = status.as_u16(), reason = %message, "ingest request refused");
        crate::metrics::count_ingest(status.as_u16(), 0);
        rill_http::error(status, message)
    };
    if !rill_proto::valid_name(&log) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected a log name made of letters, digits, '.', '_' and '-' after /ingest/".into(),
        );
    }
    let source = match caller {
        Some(Extension(Caller(name))) => name,
        None => IngestSettings::LOCAL_SOURCE.to_owned(),
    };
    let kind = match Kind::of(
        headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?")),
    ) {
        Ok(k) => k,
        Err(m) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k)
                if !k.is_empty()
                    && k.len() <= MAX_KEY
                    && k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(k.to_owned())
            }
            _ => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "expected an Idempotency-Key of 1 to {MAX_KEY} printable ASCII characters"
                    ),
                )
            }
        },
    };
    let max = shared.settings.max_body;
    let too_big =
        || format!("the body is over ingest.max_body ({max} bytes); send fewer events per request");
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > max)
    {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, too_big());
    }
    // The permit is held until the events are stored: at most UPLOADS
    // bodies (and what is made of them) in memory at once.
    let Ok(Ok(upload)) = tokio::time::timeout(
        Duration::from_secs(30),
        Arc::clone(&shared.uploads).acquire_owned(),
    )
    .await
    else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {UPLOADS} uploads are being read; try again"),
        );
    };
    let read = axum::body::to_bytes(body, usize::try_from(max).unwrap_or(usize::MAX));
    let Ok(read) = tokio::time::timeout(UPLOAD_WITHIN, read).await else {
        return refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {}s",
                UPLOAD_WITHIN.as_secs()
            ),
        );
    };
    let body = match read {
        Ok(b) => b,
        Err(e) => {
            let length_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if length_limit {
                refuse(StatusCode::PAYLOAD_TOO_LARGE, too_big())
            } else {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            };
        }
    };
    let log2 = log.clone();
    work.run(move |job| {
        let _upload = upload;
        store(&shared, &source, &log2, key, kind, &body, job.deadline)
    })
    .await
}

/// Decodes, stores and publishes one request's events: its answer.
fn store(
    shared: &Shared,
    source: &str,
    log: &str,
    key: Option<String>,
    kind: Kind,
    body: &[u8],
    deadline: Instant,
) -> (StatusCode, Vec<u8>) {
    let answer = |status: StatusCode, v: serde_json::Value| (status, v.to_string().into_bytes());
    let refuse = |status: StatusCode, message: String| {
        warn!(source, log, status = status.as_u16(), reason = %message, "ingest request refused");
        crate::metrics::count_ingest(status.as_u16(), 0);
        answer(status, serde_json::json!({ "error": message }))
    };
    let digest: [u8; 32] = Sha256::digest(body).into();
    let remembered_as = key
        .as_ref()
        .map(|k| (source.to_owned(), log.to_owned(), k.clone()));
    if let Some(k) = &remembered_as {
        let seen = shared
            .remembered
            .lock()
            .expect("not poisoned")
            .keys
            .get(k)
            .copied();
        match seen {
            Some((d, n)) if d == digest => {
                crate::metrics::count_ingest(200, 0);
                return answer(
                    StatusCode::OK,
                    serde_json::json!({"accepted": n, "source": source, "log": log, "replayed": true}),
                );
            }
            Some(_) => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used for another body; use a new key for new events"
                        .into(),
                )
            }
            None => {}
        }
    }
    let events: Events = match decode::decode(kind, body) {
        Ok(e) => e,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, m),
    };
    let origin = Origin {
        source,
        log,
        collector: &shared.collector,
        file_id: decode::file_id(source, log, key.as_deref().map(|k| (k, &digest))),
        read_at: chrono::Utc::now(),
    };
    let records = decode::to_records(&events, &origin);
    let n = events.lines.len();
    drop(events);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let batch = Batch {
        records: records.clone(),
        done: Some(done_tx),
    };
    match shared.tx.try_send(batch) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: the parser's queue for the disk is full (the index is behind, or \
                 upstreams are busy); try again with the same Idempotency-Key"
                    .into(),
            )
        }
        Err(TrySendError::Disconnected(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the parser is stopping; try again with the same Idempotency-Key".into(),
            )
        }
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    if done_rx.recv_timeout(wait).is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the events were not stored within the request's deadline (the index is behind); \
             try again with the same Idempotency-Key"
                .into(),
        );
    }
    if let Some(k) = remembered_as {
        shared
            .remembered
            .lock()
            .expect("not poisoned")
            .insert(k, (digest, n));
    }
    publish(shared, source, log, records);
    crate::metrics::count_ingest(200, n as u64);
    answer(
        StatusCode::OK,
        serde_json::json!({"accepted": n, "source": source, "log": log}),
    )
}

/// The stored events on `line/<source>/<log>`, numbered per topic.
fn publish(shared: &Shared, source: &str, log: &str, records: Vec<(Vec<u8>, Vec<u8>)>) {
    let topic = rill_proto::Topic::Line { host: source, log }.to_string();
    let mut live = shared.live.lock().expect("not poisoned");
    if live.seq.len() > 100_000 {
        live.seq.clear();
    }
    for (meta, lines) in records {
        let Ok(mut m) = serde_json::from_slice::<rill_proto::LineMeta>(&meta) else {
            continue;
        };
        let seq = live.seq.entry(topic.clone()).or_insert(0);
        m.seq = *seq;
        *seq += m.lines;
        let meta = serde_json::to_vec(&m).expect("line meta serialises");
        let _ = live
            .socket
            .send_multipart([topic.as_bytes(), &meta[..], &lines[..]], zmq::DONTWAIT);
    }
}

/// Threads subscribed to the upstreams with `index: true`: their lines
/// (another collector's, not seen yet) into the write-ahead log through
/// the same queue as received requests. Stopped when dropped.
pub fn index_upstreams(
    cfg: &Config,
    ctx: &zmq::Context,
    tx: &SyncSender<Batch>,
) -> Result<Feeds, rill_bus::BusError> {
    Feeds::start(
        ctx,
        cfg.upstreams.values().filter(|u| u.index),
        &cfg.collector,
        ("index", UPSTREAM_BATCH),
        |_| {
            let tx = tx.clone();
            Ok(move |messages: Vec<Vec<Vec<u8>>>, stop: &AtomicBool| {
                let records: Vec<_> = messages.into_iter().filter_map(line_record).collect();
                if records.is_empty() {
                    return true;
                }
                let mut batch = Batch {
                    records,
                    done: None,
                };
                // A full queue waits here (the upstream's socket then holds,
                // and past its bound drops, lines), but never past a stop:
                // the parser may be ending on an error.
                loop {
                    match tx.try_send(batch) {
                        Ok(()) => return true,
                        Err(TrySendError::Full(b)) if !stop.load(Ordering::Relaxed) => {
                            batch = b;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => return false,
                    }
                }
            })
        },
    )
}

/// A `line/` message's meta and lines as a record (the feed added this
/// collector to the meta's `via`, so the `parsed/` events made of it are
/// never sent back toward it).
fn line_record(frames: Vec<Vec<u8>>) -> Option<(Vec<u8>, Vec<u8>)> {
    if frames.len() < 3 || !frames[0].starts_with(b"line/") {
        return None;
    }
    let mut f = frames.into_iter().skip(1);
    Some((f.next()?, f.next()?))
}
