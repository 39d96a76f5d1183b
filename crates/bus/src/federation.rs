//! The federation endpoint (`streams.federation`): where other collectors
//! take this one's `line/` and `parsed/` streams (their `upstreams:`).
//!
//! A plain stream subscriber (SUB on `streams.endpoint`) cannot be spared
//! anything: ZeroMQ filters by topic prefix only. A downstream collector
//! must never be sent its own lines back, nor lines it passed on itself,
//! so collectors federate on a ROUTER instead. Each downstream (a DEALER,
//! [`crate::upstream::Feed`]) says `hello <collector> <topics as JSON>`
//! when its connection is made and every [`HELLO_EVERY`]; it is then sent
//! every message its topics match, except those whose origin
//! (`collector`) or path (`via`, the collectors that rebroadcast it) names
//! it: those are counted as held back. A downstream whose queue is full
//! ([`QUEUE`] messages: it fell behind) loses messages, counted as
//! dropped. Every [`HELLO_EVERY`] each downstream is sent a `ping` (which
//! it ignores): one whose connection is gone (ZMTP heartbeats close a dead
//! one within 15 s) is forgotten then, or at the first message sent to it.
//! Counts are kept per collector (all its connections, gone ones
//! included), lines not messages.
//!
//! A hello that cannot be read is answered `failed <why>` and changes
//! nothing. A frame over [`MAX_HELLO`] bytes closes its connection
//! (libzmq's limit; no answer), and at most [`MAX_DOWNSTREAMS`]
//! connections are served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_proto::topic::valid_name;
use rill_proto::{DownstreamStatus, TopicPattern};
use serde::Deserialize;
use tracing::{info, warn};

use crate::gate::Gate;
use crate::proxy::INPROC_STREAMS;
use crate::socket::{self, Role};
use crate::BusError;

/// The first frame of a downstream's greeting.
pub const HELLO: &[u8] = b"hello";
/// The first frame of the answer to a greeting that was refused.
pub const FAILED: &[u8] = b"failed";
/// The one frame of a check that a downstream is still there.
pub const PING: &[u8] = b"ping";
/// How often a downstream says hello again, and is pinged.
pub const HELLO_EVERY: Duration = Duration::from_secs(10);
/// The most downstream connections served at once (a collector with
/// `index: true` has two).
pub const MAX_DOWNSTREAMS: usize = 64;
/// The most topic patterns in a hello (as in `upstreams.<name>.topics`).
pub const MAX_PATTERNS: usize = 32;
/// The largest frame a downstream may send (32 patterns of 256 bytes fit).
pub const MAX_HELLO: i64 = 16 << 10;
/// Messages queued for one downstream before it loses them: a `line/`
/// message holds up to 128 KiB, so at most ~32 MB per connection.
pub const QUEUE: i32 = 250;
/// Collectors whose counts are kept after their last connection went.
const GONE_KEPT: usize = 1024;
/// Messages of each kind (stream messages, greetings) taken per round.
const BURST: usize = 1_000;
/// Refused hellos are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the endpoint shows of its downstreams, refreshed every second.
pub type SharedDownstreams = Arc<Mutex<Vec<DownstreamStatus>>>;

/// A running federation endpoint; stopped (and joined) when dropped.
pub struct Federation {
    endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    statuses: SharedDownstreams,
}

impl Federation {
    /// Binds `endpoint` (guarded by `gate`, the stream endpoint's, when
    /// there is one) and fans out the streams served in this process on
    /// [`INPROC_STREAMS`] (start the proxy first). `own` is this
    /// collector's name: its lines carry it or no name at all.
    pub fn start(
        ctx: &zmq::Context,
        endpoint: &str,
        gate: Option<&Gate>,
        own: &str,
    ) -> Result<Federation, BusError> {
        let router = socket::open(ctx, zmq::ROUTER, Role::Live)?;
        if let Some(g) = gate {
            g.guard(&router)?;
        }
        // A full or vanished downstream is told apart (EAGAIN,
        // EHOSTUNREACH) instead of its messages vanishing silently.
        router.set_router_mandatory(true)?;
        router.set_maxmsgsize(MAX_HELLO)?;
        router.set_sndhwm(QUEUE)?;
        socket::bind(&router, endpoint)?;
        // The port the kernel chose, for `tcp://HOST:*`.
        let endpoint = router
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| endpoint.to_owned());
        // Deep: the fan-out must not lose what a fast tap publishes while
        // it sends to a slow downstream (that one drops instead).
        let streams = socket::open(ctx, zmq::SUB, Role::LiveBus)?;
        streams.connect(INPROC_STREAMS)?;
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = SharedDownstreams::default();
        let mut fanout = Fanout {
            router,
            streams,
            own: own.to_owned(),
            peers: HashMap::new(),
            gone: HashMap::new(),
            subscribed: false,
            refused: 0,
            warned: None,
            statuses: Arc::clone(&statuses),
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("federation".into())
                .spawn(move || fanout.run(&stop))
                .map_err(|e| BusError::Config(format!("could not start a thread: {e}")))?
        };
        info!(%endpoint, "federation endpoint open");
        Ok(Federation {
            endpoint,
            stop,
            thread: Some(thread),
            statuses,
        })
    }

    /// Where it is bound.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A handle on what it shows of its downstreams.
    pub fn statuses(&self) -> SharedDownstreams {
        Arc::clone(&self.statuses)
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One downstream connection.
struct Peer {
    collector: String,
    topics: Vec<String>,
    patterns: Vec<TopicPattern>,
    seen_at: chrono::DateTime<Utc>,
    counts: Counts,
}

/// Lines sent, held back and dropped.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sent: u64,
    held_back: u64,
    dropped: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.sent += o.sent;
        self.held_back += o.held_back;
        self.dropped += o.dropped;
    }
}

/// What a stream message says of where it has been (a `LineMeta` or a
/// `ParsedEvent`: both name these the same).
#[derive(Deserialize)]
struct Origin {
    #[serde(default)]
    collector: String,
    #[serde(default)]
    via: Vec<String>,
    #[serde(default)]
    lines: u64,
}

struct Fanout {
    router: zmq::Socket,
    streams: zmq::Socket,
    own: String,
    peers: HashMap<Vec<u8>, Peer>,
    /// The counts of connections gone, per collector.
    gone: HashMap<String, (Counts, chrono::DateTime<Utc>)>,
    /// Whether `streams` is subscribed (only while someone is served).
    subscribed: bool,
    /// Hellos refused, and when that was last logged.
    refused: u64,
    warned: Option<Instant>,
    statuses: SharedDownstreams,
}

impl Fanout {
    fn run(&mut self, stop: &AtomicBool) {
        let mut refreshed = Instant::now();
        let mut pinged = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut items = [
                self.router.as_poll_item(zmq::POLLIN),
                self.streams.as_poll_item(zmq::POLLIN),
            ];
            if let Err(e) = zmq::poll(&mut items, 200) {
                if e != zmq::Error::EINTR {
                    warn!(error = %e, "federation endpoint failed");
                    return;
                }
            }
            // Bounded, as the stream messages are: a flood of hellos
            // delays the fan-out by at most a burst each round.
            for _ in 0..BURST {
                match self.router.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => self.greeting(frames),
                    Err(_) => break,
                }
            }
            for _ in 0..BURST {
                match self.streams.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => self.fan_out(&frames),
                    Err(_) => break,
                }
            }
            if pinged.elapsed() >= HELLO_EVERY {
                pinged = Instant::now();
                self.ping();
            }
            if refreshed.elapsed() >= Duration::from_secs(1) {
                refreshed = Instant::now();
                self.refresh();
            }
        }
    }

    /// A downstream's message: a hello, or something answered `failed`
    /// (logged once per [`WARN_EVERY`], so a flood of them does not flood
    /// the log).
    fn greeting(&mut self, frames: Vec<Vec<u8>>) {
        let Some(id) = frames.first().cloned() else {
            return;
        };
        let Err(why) = self.hello(&id, &frames[1..]) else {
            return;
        };
        self.refused += 1;
        if self.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            warn!(reason = %why, refused = self.refused, "refused a downstream collector's hello");
            self.warned = Some(Instant::now());
        }
        let _ = self
            .router
            .send(&id[..], zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| {
                self.router
                    .send_multipart([FAILED, why.as_bytes()], zmq::DONTWAIT)
            });
    }

    fn hello(&mut self, id: &[u8], frames: &[Vec<u8>]) -> Result<(), String> {
        let [kind, collector, topics] = frames else {
            return Err(format!(
                "expected 3 frames (hello, COLLECTOR, TOPICS as JSON), got {}",
                frames.len()
            ));
        };
        if kind != HELLO {
            return Err("expected a hello".into());
        }
        let collector = std::str::from_utf8(collector)
            .ok()
            .filter(|c| valid_name(c) && c.len() <= 256)
            .ok_or("expected a collector name of [A-Za-z0-9._-], at most 256 bytes")?
            .to_owned();
        let topics: Vec<String> = serde_json::from_slice(topics)
            .map_err(|e| format!("expected the topics as a JSON list of strings: {e}"))?;
        if topics.is_empty() || topics.len() > MAX_PATTERNS {
            return Err(format!(
                "expected 1 to {MAX_PATTERNS} topic patterns, got {}",
                topics.len()
            ));
        }
        let patterns = topics
            .iter()
            .map(|t| TopicPattern::parse(t).map_err(|e| format!("topic {t:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(p) = self.peers.get_mut(id) {
            p.seen_at = Utc::now();
            if p.collector != collector || p.topics != topics {
                p.collector = collector;
                p.topics = topics;
                p.patterns = patterns;
            }
            return Ok(());
        }
        if self.peers.len() >= MAX_DOWNSTREAMS {
            return Err(format!(
                "this collector serves at most {MAX_DOWNSTREAMS} downstream connections"
            ));
        }
        info!(%collector, ?topics, "downstream collector subscribed");
        self.peers.insert(
            id.to_vec(),
            Peer {
                collector,
                topics,
                patterns,
                seen_at: Utc::now(),
                counts: Counts::default(),
            },
        );
        self.subscribe(true);
        Ok(())
    }

    /// Sends one stream message to every downstream that asked for it and
    /// did not send it here.
    fn fan_out(&mut self, frames: &[Vec<u8>]) {
        let Some(topic) = frames.first().and_then(|t| std::str::from_utf8(t).ok()) else {
            return;
        };
        let mut origin: Option<Origin> = None;
        let mut gone = Vec::new();
        for (id, peer) in &mut self.peers {
            if !peer.patterns.iter().any(|p| p.matches(topic)) {
                continue;
            }
            if origin.is_none() {
                let Some(o) = frames
                    .get(1)
                    .and_then(|m| serde_json::from_slice::<Origin>(m).ok())
                else {
                    return;
                };
                origin = Some(o);
            }
            let o = origin.as_ref().expect("read above");
            let from = if o.collector.is_empty() {
                &self.own
            } else {
                &o.collector
            };
            let lines = o.lines.max(1);
            if *from == peer.collector || o.via.contains(&peer.collector) {
                peer.counts.held_back += lines;
                continue;
            }
            let sent = self
                .router
                .send(&id[..], zmq::SNDMORE | zmq::DONTWAIT)
                .and_then(|()| {
                    self.router
                        .send_multipart(frames.iter().map(|f| &f[..]), zmq::DONTWAIT)
                });
            match sent {
                Ok(()) => peer.counts.sent += lines,
                Err(zmq::Error::EHOSTUNREACH) => gone.push(id.clone()),
                Err(_) => peer.counts.dropped += lines,
            }
        }
        for id in gone {
            self.forget(&id, "disconnected");
        }
    }

    /// Pings every downstream: those whose connection is gone are
    /// forgotten (a full queue is no answer either way).
    fn ping(&mut self) {
        let gone: Vec<Vec<u8>> = self
            .peers
            .keys()
            .filter(|id| {
                let sent = self
                    .router
                    .send(&id[..], zmq::SNDMORE | zmq::DONTWAIT)
                    .and_then(|()| self.router.send(PING, zmq::DONTWAIT));
                matches!(sent, Err(zmq::Error::EHOSTUNREACH))
            })
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id, "disconnected");
        }
    }

    /// A connection is gone: its counts stay with its collector's.
    fn forget(&mut self, id: &[u8], why: &str) {
        if let Some(p) = self.peers.remove(id) {
            info!(collector = %p.collector, reason = why, "downstream connection gone");
            if self.gone.len() >= GONE_KEPT && !self.gone.contains_key(&p.collector) {
                self.gone.clear();
            }
            let g = self.gone.entry(p.collector).or_default();
            g.0.add(p.counts);
            g.1 = g.1.max(p.seen_at);
        }
        if self.peers.is_empty() {
            self.subscribe(false);
        }
    }

    /// Subscribes to the streams while someone is served.
    fn subscribe(&mut self, on: bool) {
        if on == self.subscribed {
            return;
        }
        for prefix in [&b"line/"[..], b"parsed/"] {
            let r = if on {
                self.streams.set_subscribe(prefix)
            } else {
                self.streams.set_unsubscribe(prefix)
            };
            if let Err(e) = r {
                warn!(error = %e, "federation endpoint could not change its subscription");
            }
        }
        self.subscribed = on;
    }

    /// The statuses, one per collector: its connections' counts summed
    /// with those of its connections gone (so they never go down).
    fn refresh(&self) {
        let mut by: std::collections::BTreeMap<&str, DownstreamStatus> = Default::default();
        for (collector, (counts, seen_at)) in &self.gone {
            let d = by.entry(collector).or_insert_with(|| status(collector));
            add(d, *counts, *seen_at);
        }
        for p in self.peers.values() {
            let d = by
                .entry(&p.collector)
                .or_insert_with(|| status(&p.collector));
            add(d, p.counts, p.seen_at);
            d.connections += 1;
            for t in &p.topics {
                if !d.topics.contains(t) {
                    d.topics.push(t.clone());
                }
            }
        }
        *self.statuses.lock().expect("not poisoned") = by.into_values().collect();
    }
}

fn status(collector: &str) -> DownstreamStatus {
    DownstreamStatus {
        collector: collector.to_owned(),
        ..DownstreamStatus::default()
    }
}

fn add(d: &mut DownstreamStatus, c: Counts, seen_at: chrono::DateTime<Utc>) {
    d.sent += c.sent;
    d.held_back += c.held_back;
    d.dropped += c.dropped;
    d.seen_at = d.seen_at.max(seen_at);
}
