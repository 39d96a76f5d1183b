//! One upstream collector's streams (`upstreams:`), taken from its
//! federation endpoint ([`crate::federation`]): a DEALER logged in as the
//! config says, that says hello (this collector's name and the topics it
//! wants) whenever its connection is made and every
//! [`federation::HELLO_EVERY`], its connection watched (a socket monitor),
//! and every message checked before it is passed on:
//!
//! - only `line/` and `parsed/` messages travel between collectors (they
//!   name the collector that first read them); `ping/`, `status/` and
//!   `alert/` are about the upstream itself and stay there;
//! - the upstream sends no message that came from here (first read here,
//!   or rebroadcast by this collector: [`LineMeta::via`]); one that comes
//!   all the same is dropped as a duplicate;
//! - a message already passed on (it came by two ways, through one upstream
//!   or two) is dropped: the identity (collector, host, log, file, offset)
//!   of its first line is remembered for the last [`REMEMBERED`] messages,
//!   in one [`SharedSeen`] for all the feeds of a process;
//! - gaps in the origin's sequence numbers are counted as dropped.
//!
//! What passes carries this collector in its `via` ([`rebroadcast_meta`]):
//! the supervisor rebroadcasts it on its own endpoints, and the parser
//! indexes it when the upstream says `index: true` (the `parsed/` events
//! made of it carry the `via` too), so none of it is sent back here. libzmq reconnects a
//! lost connection by itself, waiting 100 ms doubling to 10 s; after a
//! refused login it does not, so the feed connects again itself, waiting
//! 1 s doubling to [`RETRY_MAX`] between refusals.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rill_config::hub::Upstream;
use rill_proto::{LineMeta, ParsedEvent, TopicPattern, UpstreamStatus};
use tracing::{info, warn};

use crate::client_auth::ClientAuth;
use crate::federation::{self, FAILED, HELLO};
use crate::monitor::{event, Monitor};
use crate::socket::{self, Role};
use crate::BusError;

/// Message identities remembered to drop repeats.
pub const REMEMBERED: usize = 200_000;
/// The longest wait between attempts after refused logins.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The first wait after a refused login.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The largest message taken from an upstream.
const MAX_MESSAGE: i64 = 72 << 20;
/// The longest wait between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The status of one upstream, shared with whoever reports it.
pub type SharedStatus = Arc<Mutex<UpstreamStatus>>;

/// The identities passed on, shared by every feed of a process.
pub type SharedSeen = Arc<Mutex<Seen>>;

/// A new, empty [`SharedSeen`].
pub fn shared_seen() -> SharedSeen {
    Arc::default()
}

/// A subscription to one upstream.
pub struct Feed {
    sub: zmq::Socket,
    endpoint: String,
    /// The hello: this collector's name and the topics, as JSON.
    hello: [Vec<u8>; 3],
    hello_due: std::time::Instant,
    /// When to connect again after a refused login, and the wait after
    /// the next refusal.
    retry_at: Option<std::time::Instant>,
    backoff: Duration,
    monitor: Monitor,
    patterns: Vec<TopicPattern>,
    own: String,
    status: SharedStatus,
    seen: SharedSeen,
    /// Per (collector, topic, epoch): the next sequence number expected.
    next_seq: HashMap<(String, String, String), u64>,
}

impl Feed {
    /// Subscribes to `u`'s topics as collector `own`; `seen` is shared with
    /// the process's other feeds.
    pub fn connect(
        ctx: &zmq::Context,
        u: &Upstream,
        own: &str,
        seen: SharedSeen,
    ) -> Result<Feed, BusError> {
        let auth = ClientAuth::for_upstream(u).map_err(BusError::Config)?;
        let sub = socket::open(ctx, zmq::DEALER, Role::Live)?;
        auth.apply(&sub)?;
        // A line of at most 64 MiB (tap.max_line_bytes) and its meta: a
        // bigger message closes the connection instead of filling memory.
        sub.set_maxmsgsize(MAX_MESSAGE)?;
        sub.set_reconnect_ivl(100)?;
        sub.set_reconnect_ivl_max(RECONNECT_MAX.as_millis() as i32)?;
        let patterns: Vec<TopicPattern> = u
            .topics
            .iter()
            .map(|p| TopicPattern::parse(p))
            .collect::<Result<_, _>>()?;
        let topics = serde_json::to_vec(&u.topics).expect("strings serialize");
        let monitor = Monitor::watch(ctx, &sub)?;
        socket::connect(&sub, &u.endpoint)?;
        info!(upstream = %u.name, endpoint = %u.endpoint, "subscribing to upstream");
        let mut feed = Feed {
            sub,
            endpoint: u.endpoint.clone(),
            hello: [HELLO.to_vec(), own.as_bytes().to_vec(), topics],
            hello_due: std::time::Instant::now(),
            retry_at: None,
            backoff: RETRY_FIRST,
            monitor,
            patterns,
            own: own.to_owned(),
            status: Arc::new(Mutex::new(UpstreamStatus {
                name: u.name.clone(),
                endpoint: u.endpoint.clone(),
                ..UpstreamStatus::default()
            })),
            seen,
            next_seq: HashMap::new(),
        };
        feed.say_hello();
        Ok(feed)
    }

    /// Tells the upstream who we are and what we want (queued until the
    /// connection is made; said again on every new connection).
    fn say_hello(&mut self) {
        let _ = self
            .sub
            .send_multipart(self.hello.iter().map(|f| &f[..]), zmq::DONTWAIT);
        self.hello_due = std::time::Instant::now() + federation::HELLO_EVERY;
    }

    /// A handle on its status.
    pub fn status(&self) -> SharedStatus {
        Arc::clone(&self.status)
    }

    /// The next message to pass on (topic first, frames unchanged), or
    /// None when none came within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Vec<Vec<u8>>>, BusError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let now = std::time::Instant::now();
            if self.retry_at.is_some_and(|t| t <= now) {
                self.retry_at = None;
                let _ = self.sub.disconnect(&self.endpoint);
                socket::connect(&self.sub, &self.endpoint)?;
            }
            if self.hello_due <= now {
                self.say_hello();
            }
            let left = deadline
                .min(self.retry_at.unwrap_or(deadline))
                .min(self.hello_due)
                .saturating_duration_since(now);
            let mut items = [
                self.sub.as_poll_item(zmq::POLLIN),
                self.monitor.socket().as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, left.as_millis().min(i64::MAX as u128) as i64) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let (msg, event) = (items[0].is_readable(), items[1].is_readable());
            if event {
                self.events();
            }
            if msg {
                while let Ok(frames) = self.sub.recv_multipart(zmq::DONTWAIT) {
                    if let Some(frames) = self.check(frames) {
                        return Ok(Some(frames));
                    }
                }
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// The socket monitor's events into the status.
    fn events(&mut self) {
        let mut hello = false;
        for (e, value) in self.monitor.events() {
            let mut s = self.status.lock().expect("not poisoned");
            let name = s.name.clone();
            let fail = |s: &mut UpstreamStatus, why: String| {
                if s.connected || s.last_error.as_deref() != Some(&why) {
                    warn!(upstream = %name, reason = %why, "upstream not connected");
                }
                s.connected = false;
                s.last_error = Some(why);
            };
            if matches!(
                e,
                event::HANDSHAKE_FAILED_AUTH | event::HANDSHAKE_FAILED_PROTOCOL
            ) && self.retry_at.is_none()
            {
                // libzmq gives up on this connection: try again later.
                self.retry_at = Some(std::time::Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
            }
            match e {
                event::HANDSHAKE_SUCCEEDED => {
                    if !s.connected {
                        info!(upstream = %name, "upstream connected");
                    }
                    s.connected = true;
                    self.backoff = RETRY_FIRST;
                    hello = true;
                }
                event::HANDSHAKE_FAILED_AUTH => fail(
                    &mut s,
                    format!("refused: the upstream did not accept our login (ZAP status {value})"),
                ),
                event::HANDSHAKE_FAILED_NO_DETAIL | event::HANDSHAKE_FAILED_PROTOCOL => fail(
                    &mut s,
                    "refused: the handshake failed (wrong keys or mechanism, or the endpoint \
                     is not the upstream's streams.federation: a streams.endpoint does not \
                     federate)"
                        .into(),
                ),
                // After a refusal the connection closes too: the refusal
                // is what to show.
                event::DISCONNECTED if s.connected => {
                    fail(&mut s, "disconnected".into());
                }
                event::DISCONNECTED if s.last_error.is_none() => {
                    s.last_error = Some("disconnected".into());
                }
                event::CONNECT_RETRIED if !s.connected && s.last_error.is_none() => {
                    s.last_error = Some("not reachable yet (retrying)".into());
                }
                _ => {}
            }
        }
        if hello {
            // A new connection: the upstream knows nothing of us yet.
            self.say_hello();
        }
    }

    /// Whether a received message goes on, counting what happens to it.
    fn check(&mut self, mut frames: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
        if frames.first().is_some_and(|f| f == FAILED) {
            let why = String::from_utf8_lossy(frames.get(1).map_or(&[][..], |f| f)).into_owned();
            let mut s = self.status.lock().expect("not poisoned");
            if s.hello_refused.as_deref() != Some(&why) {
                warn!(upstream = %s.name, reason = %why, "the upstream refused our hello");
            }
            s.hello_refused = Some(why);
            return None;
        }
        if frames.len() < 2 {
            return None;
        }
        let topic = String::from_utf8_lossy(&frames[0]).into_owned();
        if !self.patterns.iter().any(|p| p.matches(&topic)) {
            return None;
        }
        let identity = if topic.starts_with("line/") {
            serde_json::from_slice::<LineMeta>(&frames[1])
                .ok()
                .map(|m| {
                    let lines = m.lines.max(1);
                    (
                        m.collector,
                        m.via,
                        m.host,
                        m.log,
                        m.file_id,
                        m.offset,
                        lines,
                        Some((m.epoch, m.seq)),
                    )
                })
        } else if topic.starts_with("parsed/") {
            serde_json::from_slice::<ParsedEvent>(&frames[1])
                .ok()
                .map(|e| {
                    let (c, via) = (e.collector, e.via);
                    (c, via, e.host, e.log, e.file_id, e.offset, 1, None)
                })
        } else {
            return None;
        };
        let mut s = self.status.lock().expect("not poisoned");
        let Some((collector, via, host, log, file_id, offset, lines, seq)) = identity else {
            s.last_error = Some(format!("a message on {topic} without readable metadata"));
            return None;
        };
        s.received += lines;
        if collector.is_empty() || collector == self.own || via.contains(&self.own) {
            // Ours, or passed on by us, come back around a loop (or from
            // a collector too old to name itself, which cannot be told
            // apart). The upstream holds these back.
            s.duplicates += lines;
            return None;
        }
        let kind = if topic.starts_with("line/") { 'l' } else { 'p' };
        if !self
            .seen
            .lock()
            .expect("not poisoned")
            .insert(format!("{kind}{collector}/{host}/{log}/{file_id}/{offset}"))
        {
            s.duplicates += lines;
            return None;
        }
        if let Some((epoch, seq)) = seq {
            let key = (collector, topic, epoch);
            if let Some(&want) = self.next_seq.get(&key) {
                s.dropped += seq.saturating_sub(want);
            }
            if self.next_seq.len() > 10_000 {
                self.next_seq.clear();
            }
            self.next_seq.insert(key, seq.saturating_add(lines));
        }
        s.forwarded += lines;
        // Served: a hello refused before (another topic list) is past.
        s.hello_refused = None;
        frames.truncate(3);
        if let Some(meta) = rebroadcast_meta(&frames[1], &self.own) {
            frames[1] = meta;
        }
        Some(frames)
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.sub
    }
}

/// A thread per upstream, each running its [`Feed`] and handing what it
/// passes on to a handler; stopped (and joined) when dropped.
pub struct Feeds {
    statuses: Vec<SharedStatus>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What a feed's thread does with the messages it passes on: up to
/// `batch` of them at once (those waiting together), with the stop flag
/// (a handler that waits must look at it); false ends the thread.
pub trait Handler: FnMut(Vec<Vec<Vec<u8>>>, &AtomicBool) -> bool + Send + 'static {}
impl<F: FnMut(Vec<Vec<Vec<u8>>>, &AtomicBool) -> bool + Send + 'static> Handler for F {}

impl Feeds {
    /// Subscribes to each of `upstreams` as collector `own`, all feeds
    /// sharing one [`SharedSeen`], each on a thread `<name>-<upstream>`
    /// with the handler `make` gives it. An upstream whose login cannot be
    /// read is reported in its status and not subscribed to.
    pub fn start<'a, H: Handler>(
        ctx: &zmq::Context,
        upstreams: impl IntoIterator<Item = &'a Upstream>,
        own: &str,
        (name, batch): (&str, usize),
        mut make: impl FnMut(&Upstream) -> Result<H, BusError>,
    ) -> Result<Feeds, BusError> {
        let mut feeds = Feeds {
            statuses: Vec::new(),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        let seen = shared_seen();
        for u in upstreams {
            let mut feed = match Feed::connect(ctx, u, own, Arc::clone(&seen)) {
                Ok(f) => f,
                Err(e) => {
                    warn!(upstream = %u.name, error = %e, "cannot subscribe to the upstream");
                    feeds.statuses.push(Arc::new(Mutex::new(UpstreamStatus {
                        name: u.name.clone(),
                        endpoint: u.endpoint.clone(),
                        last_error: Some(e.to_string()),
                        ..UpstreamStatus::default()
                    })));
                    continue;
                }
            };
            feeds.statuses.push(feed.status());
            let mut handle = make(u)?;
            let stop = Arc::clone(&feeds.stop);
            let upstream = u.name.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{upstream}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let first = match feed.next(Duration::from_millis(100)) {
                            Ok(Some(f)) => f,
                            Ok(None) => continue,
                            Err(e) => {
                                warn!(%upstream, error = %e, "upstream subscriber failed");
                                std::thread::sleep(Duration::from_secs(1));
                                continue;
                            }
                        };
                        let mut messages = vec![first];
                        // What else is waiting, together.
                        while messages.len() < batch {
                            match feed.next(Duration::ZERO) {
                                Ok(Some(f)) => messages.push(f),
                                _ => break,
                            }
                        }
                        if !handle(messages, &stop) {
                            break;
                        }
                    }
                })
                .map_err(|e| BusError::Config(format!("could not start a thread: {e}")))?;
            feeds.threads.push(thread);
        }
        Ok(feeds)
    }

    /// Handles on each upstream's status.
    pub fn statuses(&self) -> Vec<SharedStatus> {
        self.statuses.clone()
    }
}

impl Drop for Feeds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A message's metadata as collector `own` rebroadcasts it: `own` added
/// to its `via`, every other key kept (None when it is not a JSON object).
pub fn rebroadcast_meta(meta: &[u8], own: &str) -> Option<Vec<u8>> {
    use serde_json::Value;
    let mut m: serde_json::Map<String, Value> = serde_json::from_slice(meta).ok()?;
    match m.entry("via").or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(via) => via.push(own.into()),
        other => *other = Value::Array(vec![own.into()]),
    }
    serde_json::to_vec(&m).ok()
}

/// The identities of the last [`REMEMBERED`] messages passed on.
#[derive(Default)]
pub struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Whether `key` is new (it is remembered then).
    fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_for_checks(own: &str) -> Feed {
        let ctx = zmq::Context::new();
        let u = Upstream {
            name: "us-1".into(),
            endpoint: "tcp://127.0.0.1:1".into(),
            topics: vec!["line/#".into(), "parsed/#".into()],
            index: false,
            plain: None,
            curve: None,
        };
        Feed::connect(&ctx, &u, own, shared_seen()).unwrap()
    }

    fn line(collector: &str, offset: u64, seq: u64) -> Vec<Vec<u8>> {
        let meta = serde_json::json!({
            "host": "web01", "log": "app", "path": "/p", "file_id": "1:2:00000003",
            "offset": offset, "seq": seq, "epoch": "e", "read_at": "2026-12-03T10:00:00Z",
            "collector": collector,
        });
        vec![
            b"line/web01/app".to_vec(),
            meta.to_string().into_bytes(),
            b"x".to_vec(),
        ]
    }

    #[test]
    fn own_lines_repeats_and_gaps_are_told_apart() {
        let mut f = feed_for_checks("eu-1");
        let passed = f.check(line("us-1", 0, 0)).expect("passed on");
        let meta: LineMeta = serde_json::from_slice(&passed[1]).unwrap();
        assert_eq!(
            (meta.collector.as_str(), &meta.via[..]),
            ("us-1", &["eu-1".to_owned()][..]),
            "passed on with us in its via"
        );
        assert!(f.check(line("us-1", 0, 0)).is_none(), "a repeat");
        assert!(
            f.check(line("eu-1", 2, 1)).is_none(),
            "our own, back from a loop"
        );
        assert!(f.check(line("", 4, 2)).is_none(), "no collector named");
        let mut passed_on_by_us = line("us-1", 5, 3);
        passed_on_by_us[1] = rebroadcast_meta(&passed_on_by_us[1], "eu-1").unwrap();
        assert!(f.check(passed_on_by_us).is_none(), "passed on by us");
        assert!(f.check(line("us-1", 6, 5)).is_some(), "after a gap of 4");
        assert!(f
            .check(vec![b"ping/web01".to_vec(), b"{}".to_vec()])
            .is_none());
        let s = f.status().lock().unwrap().clone();
        assert_eq!(
            (s.received, s.forwarded, s.duplicates, s.dropped),
            (6, 2, 4, 4)
        );
    }

    #[test]
    fn a_rebroadcast_adds_us_to_via_and_keeps_everything_else() {
        let first = rebroadcast_meta(&line("us-1", 0, 0)[1], "eu-1").unwrap();
        let twice = rebroadcast_meta(&first, "hub").unwrap();
        let m: LineMeta = serde_json::from_slice(&twice).unwrap();
        assert_eq!(
            (m.collector.as_str(), &m.via[..]),
            ("us-1", &["eu-1".to_owned(), "hub".to_owned()][..])
        );
        assert_eq!(
            (m.offset, m.host.as_str(), m.epoch.as_str()),
            (0, "web01", "e")
        );
        let unknown = rebroadcast_meta(br#"{"via":"x","new_key":1}"#, "eu-1").unwrap();
        assert_eq!(unknown, br#"{"new_key":1,"via":["eu-1"]}"#);
        assert_eq!(rebroadcast_meta(b"[1]", "eu-1"), None);
    }
}
