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
//! (it fell behind) loses messages, counted as dropped; one that has not
//! said hello for [`FORGET_AFTER`] is forgotten.
//!
//! A hello that cannot be read is answered `failed <why>` and changes
//! nothing; hellos are at most [`MAX_HELLO`] bytes and at most
//! [`MAX_DOWNSTREAMS`] collectors are served.

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
/// How often a downstream says hello again.
pub const HELLO_EVERY: Duration = Duration::from_secs(10);
/// A downstream silent this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(35);
/// The most downstream collectors served at once.
pub const MAX_DOWNSTREAMS: usize = 256;
/// The most topic patterns in a hello.
pub const MAX_PATTERNS: usize = 64;
/// The largest message a downstream may send (a hello).
pub const MAX_HELLO: i64 = 64 << 10;
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
    hello_at: Instant,
    status: DownstreamStatus,
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
            let mut greeted = false;
            for _ in 0..BURST {
                match self.router.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => greeted |= self.greeting(frames),
                    Err(_) => break,
                }
            }
            if greeted {
                self.refresh();
            }
            for _ in 0..BURST {
                match self.streams.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => self.fan_out(&frames),
                    Err(_) => break,
                }
            }
            if refreshed.elapsed() >= Duration::from_secs(1) {
                refreshed = Instant::now();
                self.forget_silent();
                self.refresh();
            }
        }
    }

    /// A downstream's message: a hello (true), or something answered
    /// `failed` (logged once per [`WARN_EVERY`], so a flood of them does
    /// not flood the log).
    fn greeting(&mut self, frames: Vec<Vec<u8>>) -> bool {
        let Some(id) = frames.first().cloned() else {
            return false;
        };
        let Err(why) = self.hello(&id, &frames[1..]) else {
            return true;
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
        false
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
        let now = Instant::now();
        if let Some(p) = self.peers.get_mut(id) {
            p.hello_at = now;
            p.status.seen_at = Utc::now();
            if p.collector != collector || p.topics != topics {
                p.collector.clone_from(&collector);
                p.status.collector = collector;
                p.topics.clone_from(&topics);
                p.status.topics = topics;
                p.patterns = patterns;
            }
            return Ok(());
        }
        if self.peers.len() >= MAX_DOWNSTREAMS {
            return Err(format!(
                "this collector serves at most {MAX_DOWNSTREAMS} downstream collectors"
            ));
        }
        info!(%collector, ?topics, "downstream collector subscribed");
        self.peers.insert(
            id.to_vec(),
            Peer {
                collector: collector.clone(),
                topics: topics.clone(),
                patterns,
                hello_at: now,
                status: DownstreamStatus {
                    collector,
                    topics,
                    seen_at: Utc::now(),
                    ..DownstreamStatus::default()
                },
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
                peer.status.held_back += lines;
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
                Ok(()) => peer.status.sent += lines,
                Err(zmq::Error::EHOSTUNREACH) => gone.push(id.clone()),
                Err(_) => peer.status.dropped += lines,
            }
        }
        for id in gone {
            self.forget(&id, "disconnected");
        }
    }

    fn forget_silent(&mut self) {
        let silent: Vec<Vec<u8>> = self
            .peers
            .iter()
            .filter(|(_, p)| p.hello_at.elapsed() > FORGET_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.forget(&id, "silent");
        }
    }

    fn forget(&mut self, id: &[u8], why: &str) {
        if let Some(p) = self.peers.remove(id) {
            info!(collector = %p.collector, reason = why, "downstream collector gone");
        }
        if self.peers.is_empty() {
            self.subscribe(false);
        }
        self.refresh();
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

    fn refresh(&self) {
        let mut all: Vec<DownstreamStatus> =
            self.peers.values().map(|p| p.status.clone()).collect();
        all.sort_by(|a, b| a.collector.cmp(&b.collector));
        *self.statuses.lock().expect("not poisoned") = all;
    }
}
