//! The session server's state and its answers to requests.
//!
//! Shells move one way only: warming -> ready (the pool) -> open (handed to
//! a client, with its own publish socket) -> closing. A `create_session`
//! takes the oldest ready shell, or waits (as a pending create) for the
//! next one to come up; the pool is refilled behind it. Nothing ever goes
//! back to the pool.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rill_bus::socket::{self, Role};
use rill_config::SessionSettings;
use rill_proto::session::{
    check_age, format_datetime, parse_datetime, session_topic, SessionCommand, SessionInfo,
    SessionReply, SessionRequest,
};
use tracing::{debug, info, warn};

use super::gate::Gate;
use super::links::Links;
use super::shell::{Closer, Output, Shell, Step, Warming};

/// Largest request accepted (bigger ones make libzmq drop the connection).
pub const MAX_REQUEST_BYTES: i64 = 4 << 20;
/// How long a create may wait for a shell to come up.
const PENDING_FOR: Duration = Duration::from_secs(15);
/// How long a send may wait for the connection to take the data.
const WRITE_WITHIN: Duration = Duration::from_millis(500);
/// Ended or deleted sessions remembered, to say so instead of "unknown".
const REMEMBER_ENDED: usize = 65_536;

/// A session handed to a client.
struct OpenSession {
    shell: Shell,
    client_id: String,
    opened: DateTime<Utc>,
    bytes_written: u64,
    bytes_read: u64,
    publisher: zmq::Socket,
    topic: String,
    /// Topics subscribed on the publisher now (from XPUB notifications).
    subscriptions: HashSet<Vec<u8>>,
}

/// A create waiting for a shell.
struct Pending {
    envelope: Vec<Vec<u8>>,
    unique_id: String,
    client_id: String,
    since: Instant,
}

pub struct Server {
    host: String,
    settings: SessionSettings,
    ctx: zmq::Context,
    gate: Gate,
    router: zmq::Socket,
    /// Where the router listens, as bound (the base of publish endpoints).
    bound: String,
    pub links: Links,
    warming: Vec<Warming>,
    ready: VecDeque<Shell>,
    open: BTreeMap<String, OpenSession>,
    pending: VecDeque<Pending>,
    closer: Closer,
    /// Why recent sessions are gone (deleted, shell exited), oldest first.
    ended: HashMap<String, String>,
    ended_order: VecDeque<String>,
    /// unique_ids answered within max_request_age, against replays.
    seen: HashMap<String, Instant>,
    pruned: Instant,
    /// Warming failures in a row, and when the next may start.
    failures: u32,
    next_warm: Instant,
    buf: Vec<u8>,
}

impl Server {
    pub fn new(
        host: &str,
        settings: &SessionSettings,
        ctx: zmq::Context,
        gate: Gate,
        router: zmq::Socket,
        links: Links,
    ) -> Server {
        let bound = router
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| settings.endpoint.clone());
        Server {
            host: host.to_owned(),
            settings: settings.clone(),
            ctx,
            gate,
            router,
            bound,
            links,
            warming: Vec::new(),
            ready: VecDeque::new(),
            open: BTreeMap::new(),
            pending: VecDeque::new(),
            closer: Closer::default(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            seen: HashMap::new(),
            pruned: Instant::now(),
            failures: 0,
            next_warm: Instant::now(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Waits up to `max` for a request, a subscription or SSH data.
    pub fn wait(&self, max: Duration) {
        let busy = !self.warming.is_empty()
            || !self.pending.is_empty()
            || !self.open.is_empty()
            || !self.closer.is_empty();
        let timeout = if busy {
            max.min(Duration::from_millis(20))
        } else {
            max
        };
        let fds = self.links.fds();
        let mut items = vec![self.router.as_poll_item(zmq::POLLIN)];
        items.extend(
            self.open
                .values()
                .map(|s| s.publisher.as_poll_item(zmq::POLLIN)),
        );
        items.extend(
            fds.iter()
                .map(|fd| zmq::PollItem::from_fd(*fd, zmq::POLLIN)),
        );
        let _ = zmq::poll(&mut items, timeout.as_millis() as i64);
    }

    /// One turn: requests, shells, subscriptions, the pool, closes.
    pub fn turn(&mut self) -> anyhow::Result<()> {
        self.serve_requests()?;
        self.pump_warming();
        self.pump_shells()?;
        self.read_subscriptions();
        self.expire_pending();
        self.refill();
        self.closer.pump(&mut self.links.links);
        Ok(())
    }

    fn serve_requests(&mut self) -> anyhow::Result<()> {
        for _ in 0..256 {
            let frames = match self.router.recv_multipart(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(()),
                Err(e) => return Err(anyhow::anyhow!(e).context("sessions socket failed")),
            };
            let (envelope, body) = split_envelope(frames);
            match body {
                Ok(body) => self.handle(envelope, &body),
                Err(reason) => self.reply(envelope, SessionReply::failed(None, None, reason)),
            }
        }
        Ok(())
    }

    fn handle(&mut self, envelope: Vec<Vec<u8>>, body: &[u8]) {
        let req = match SessionRequest::parse(body) {
            Ok(r) => r,
            Err(rejected) => {
                debug!(reason = %rejected.reason, "malformed session request");
                return self.reply(envelope, SessionReply::rejected(rejected));
            }
        };
        let (uid, cid) = (Some(req.unique_id.clone()), Some(req.client_id.clone()));
        let sent = parse_datetime(&req.datetime).expect("checked by parse");
        if let Err(reason) = check_age(sent, Utc::now(), self.settings.max_request_age) {
            return self.reply(envelope, SessionReply::failed(uid, cid, reason));
        }
        if let Some(reason) = self.replayed(&req.unique_id) {
            return self.reply(envelope, SessionReply::failed(uid, cid, reason));
        }
        let reply = match req.command {
            SessionCommand::CreateSession => {
                return self.create(envelope, req.unique_id, req.client_id)
            }
            SessionCommand::DeleteSession { session_id } => match self.open.remove(&session_id) {
                Some(s) => {
                    info!(session = %session_id, pid = s.shell.pid, "session deleted");
                    self.retire(s, "was deleted");
                    SessionReply::ok(uid, cid)
                }
                None => SessionReply::failed(uid, cid, self.unknown(&session_id)),
            },
            SessionCommand::SendDataToSession {
                session_id,
                contents,
            } => self.send(uid, cid, &session_id, contents.as_bytes()),
            SessionCommand::GetSessionInfo { session_id } => {
                let list: Vec<SessionInfo> = match &session_id {
                    None => self.open.iter().map(|(id, s)| info_of(id, s)).collect(),
                    Some(id) => match self.open.get(id) {
                        Some(s) => vec![info_of(id, s)],
                        None => {
                            let reason = self.unknown(id);
                            return self.reply(envelope, SessionReply::failed(uid, cid, reason));
                        }
                    },
                };
                let mut r = SessionReply::ok(uid, cid);
                r.sessions = Some(list);
                r
            }
        };
        self.reply(envelope, reply);
    }

    /// A reason if `unique_id` was already used within max_request_age.
    fn replayed(&mut self, unique_id: &str) -> Option<String> {
        // Older requests are refused as stale anyway; forget their ids.
        let keep = self.settings.max_request_age * 2;
        if self.pruned.elapsed() > Duration::from_secs(1) {
            self.seen.retain(|_, at| at.elapsed() <= keep);
            self.pruned = Instant::now();
        }
        match self.seen.insert(unique_id.to_owned(), Instant::now()) {
            Some(at) if at.elapsed() <= keep => Some(format!(
                "duplicate unique_id {unique_id:?}: a request with it was already answered"
            )),
            _ => None,
        }
    }

    fn create(&mut self, envelope: Vec<Vec<u8>>, unique_id: String, client_id: String) {
        let (open, waiting, max) = (self.open.len(), self.pending.len(), self.settings.max);
        if open + waiting >= max {
            let reason = format!(
                "cap reached: {open} sessions open and {waiting} being created on {}, max is {max}",
                self.host
            );
            return self.reply(
                envelope,
                SessionReply::failed(Some(unique_id), Some(client_id), reason),
            );
        }
        let pending = Pending {
            envelope,
            unique_id,
            client_id,
            since: Instant::now(),
        };
        match self.ready.pop_front() {
            Some(shell) => self.hand_over(shell, pending),
            None => {
                debug!("no shell ready; create waits for one");
                self.pending.push_back(pending);
            }
        }
    }

    /// Gives `shell` to the client of `p`, with a publish socket of its own.
    fn hand_over(&mut self, shell: Shell, p: Pending) {
        let (uid, cid) = (Some(p.unique_id), Some(p.client_id.clone()));
        let (publisher, endpoint) = match self.publisher() {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "could not bind a session publisher");
                self.ready.push_front(shell);
                let reason = format!("could not bind the session's publish socket: {e:#}");
                return self.reply(p.envelope, SessionReply::failed(uid, cid, reason));
            }
        };
        let id = shell.id.clone();
        info!(session = %id, pid = shell.pid, client = %p.client_id, publish = %endpoint, "session created");
        let topic = session_topic(&id);
        self.open.insert(
            id.clone(),
            OpenSession {
                shell,
                client_id: p.client_id,
                opened: Utc::now(),
                bytes_written: 0,
                bytes_read: 0,
                publisher,
                topic,
                subscriptions: HashSet::new(),
            },
        );
        let mut r = SessionReply::ok(uid, cid);
        r.session_id = Some(id);
        r.publish_zeromq_bind = Some(endpoint);
        self.reply(p.envelope, r);
    }

    /// A new XPUB socket next to the router: `ipc://<path>.<12 hex>` or the
    /// router's tcp address on a free port.
    fn publisher(&self) -> anyhow::Result<(zmq::Socket, String)> {
        let s = socket::open(&self.ctx, zmq::XPUB, Role::Live)?;
        self.gate.guard(&s)?;
        if let Some(path) = self.bound.strip_prefix("ipc://") {
            let endpoint = loop {
                let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
                let candidate = format!("{path}.{suffix}");
                if !std::path::Path::new(&candidate).exists() {
                    break format!("ipc://{candidate}");
                }
            };
            socket::bind(&s, &endpoint)?;
            super::owner_only(&endpoint);
            Ok((s, endpoint))
        } else {
            let base = self.bound.rsplit_once(':').map_or(&*self.bound, |(h, _)| h);
            socket::bind(&s, &format!("{base}:*"))?;
            let endpoint = s
                .get_last_endpoint()?
                .map_err(|_| anyhow::anyhow!("endpoint is not UTF-8"))?;
            Ok((s, endpoint))
        }
    }

    fn send(
        &mut self,
        uid: Option<String>,
        cid: Option<String>,
        id: &str,
        data: &[u8],
    ) -> SessionReply {
        let Some(s) = self.open.get_mut(id) else {
            let reason = self.unknown(id);
            return SessionReply::failed(uid, cid, reason);
        };
        let link = &self.links.links[s.shell.link];
        let (n, short) = s.shell.write(data, link, WRITE_WITHIN);
        s.bytes_written += n as u64;
        let mut r = match short {
            None => SessionReply::ok(uid, cid),
            Some(why) => SessionReply::failed(
                uid,
                cid,
                format!("wrote {n} of {} bytes: {why}", data.len()),
            ),
        };
        r.bytes_written = Some(n as u64);
        r
    }

    /// Why `id` is not an open session.
    fn unknown(&self, id: &str) -> String {
        match self.ended.get(id) {
            Some(why) => format!("session {id} {why}"),
            None => format!(
                "unknown session {id:?}: not open on {} (sessions do not outlive a restart of ssh_tap)",
                self.host
            ),
        }
    }

    /// Closes an open session's shell for good and remembers why.
    fn retire(&mut self, s: OpenSession, why: &str) {
        self.closer.push(s.shell.channel, s.shell.link);
        self.ended.insert(s.shell.id.clone(), why.to_owned());
        self.ended_order.push_back(s.shell.id);
        if self.ended_order.len() > REMEMBER_ENDED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    fn pump_warming(&mut self) {
        let mut i = 0;
        while i < self.warming.len() {
            let link = self.warming[i].link;
            let step = self.warming[i].advance(&mut self.links.links[link], &mut self.buf);
            if matches!(step, Step::Pending) {
                i += 1;
                continue;
            }
            self.warming.swap_remove(i);
            match step {
                Step::Pending => unreachable!("handled above"),
                Step::Ready(shell) => {
                    self.failures = 0;
                    debug!(session = %shell.id, pid = shell.pid, "shell ready");
                    match self.pending.pop_front() {
                        Some(p) => self.hand_over(shell, p),
                        None => self.ready.push_back(shell),
                    }
                }
                Step::Refused => {
                    // sshd's MaxSessions (the link noted it); refill tries
                    // again, on another link if this one is full.
                    let channels = self.links.links[link].channels;
                    debug!(link, channels, "server refused another channel");
                }
                Step::Failed { error, channel } => {
                    if let Some(ch) = channel {
                        self.closer.push(ch, link);
                    }
                    self.warm_failed(&error);
                }
            }
        }
    }

    /// Backs off and tells the oldest waiting create why.
    fn warm_failed(&mut self, error: &str) {
        self.failures += 1;
        let delay = Duration::from_millis(250 * 2u64.pow(self.failures.min(7)));
        self.next_warm = Instant::now() + delay;
        warn!(
            error,
            retry_in_ms = delay.as_millis() as u64,
            "could not open a shell"
        );
        if let Some(p) = self.pending.pop_front() {
            let reason = format!("could not open a shell on {}: {error}", self.host);
            self.reply(
                p.envelope,
                SessionReply::failed(Some(p.unique_id), Some(p.client_id), reason),
            );
        }
    }

    fn pump_shells(&mut self) -> anyhow::Result<()> {
        let buf = &mut self.buf;
        let mut ended = Vec::new();
        for (id, s) in &mut self.open {
            let (publisher, topic) = (&s.publisher, s.topic.as_bytes());
            let mut read = 0u64;
            let out = s.shell.read(buf, |data| {
                read += data.len() as u64;
                let frames: [&[u8]; 2] = [topic, data];
                let _ = publisher.send_multipart(frames, zmq::DONTWAIT);
            });
            s.bytes_read += read;
            if let Output::Ended(why) = out {
                ended.push((id.clone(), why));
            }
        }
        let mut died = Vec::new();
        for mut shell in std::mem::take(&mut self.ready) {
            match shell.read(buf, |_| {}) {
                Output::Idle => self.ready.push_back(shell),
                Output::Ended(why) => died.push((shell, why)),
            }
        }
        if !(ended.is_empty() && died.is_empty()) {
            // A dead connection ends every shell on it: that is ssh_tap's
            // business (it exits and robust_ssh_tap restarts it).
            self.links.keepalive()?;
        }
        for (id, why) in ended {
            let s = self.open.remove(&id).expect("listed above");
            info!(session = %id, reason = %why, "session ended");
            self.retire(s, &format!("has ended: {why}"));
        }
        for (shell, why) in died {
            warn!(session = %shell.id, reason = %why, "a pooled shell ended");
            self.closer.push(shell.channel, shell.link);
        }
        Ok(())
    }

    fn read_subscriptions(&mut self) {
        for s in self.open.values_mut() {
            while let Ok(msg) = s.publisher.recv_bytes(zmq::DONTWAIT) {
                match msg.split_first() {
                    Some((1, topic)) => {
                        s.subscriptions.insert(topic.to_vec());
                    }
                    Some((0, topic)) => {
                        s.subscriptions.remove(topic);
                    }
                    _ => {}
                }
            }
        }
    }

    fn expire_pending(&mut self) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.since.elapsed() > PENDING_FOR)
        {
            let p = self.pending.pop_front().expect("checked");
            let reason = format!(
                "no shell came up on {} within {}s",
                self.host,
                PENDING_FOR.as_secs()
            );
            self.reply(
                p.envelope,
                SessionReply::failed(Some(p.unique_id), Some(p.client_id), reason),
            );
        }
    }

    /// Starts warming shells until ready + warming covers the pool and the
    /// creates waiting.
    fn refill(&mut self) {
        let want = self.settings.pool + self.pending.len();
        while self.ready.len() + self.warming.len() < want && Instant::now() >= self.next_warm {
            match self.links.pick() {
                Ok(Some(i)) => {
                    let id = uuid::Uuid::new_v4().to_string();
                    let w = Warming::start(id, i, &mut self.links.links[i]);
                    self.warming.push(w);
                }
                Ok(None) => break,
                Err(e) => {
                    self.warm_failed(&format!("{e:#}"));
                    break;
                }
            }
        }
    }

    fn reply(&self, mut envelope: Vec<Vec<u8>>, reply: SessionReply) {
        let json = serde_json::to_vec(&reply).expect("replies serialize");
        envelope.push(json);
        if let Err(e) = self.router.send_multipart(envelope, zmq::DONTWAIT) {
            debug!(error = %e, "could not send a reply (client gone?)");
        }
    }

    /// Answers every waiting create with `reason`, then closes everything:
    /// each channel is told to close, then each connection says goodbye
    /// (sshd ends every shell still on it).
    pub fn shut_down(&mut self, reason: &str) {
        while let Some(p) = self.pending.pop_front() {
            self.reply(
                p.envelope,
                SessionReply::failed(Some(p.unique_id), Some(p.client_id), reason),
            );
        }
        let open = std::mem::take(&mut self.open);
        for (_, s) in open {
            self.closer.push(s.shell.channel, s.shell.link);
        }
        for shell in std::mem::take(&mut self.ready) {
            self.closer.push(shell.channel, shell.link);
        }
        self.warming.clear();
        self.closer.abandon();
        self.links.disconnect(Duration::from_secs(1));
    }
}

fn info_of(id: &str, s: &OpenSession) -> SessionInfo {
    SessionInfo {
        session_id: id.to_owned(),
        client_id: s.client_id.clone(),
        datetime: format_datetime(s.opened),
        bytes_written: s.bytes_written,
        bytes_read: s.bytes_read,
        subscribed: !s.subscriptions.is_empty(),
    }
}

/// Splits a ROUTER message into the envelope to send back (identity, and
/// the empty delimiter a REQ or DEALER client sends) and the one JSON body.
pub fn split_envelope(mut frames: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Result<Vec<u8>, String>) {
    let cut = frames
        .iter()
        .skip(1)
        .position(Vec::is_empty)
        .map_or(1, |i| i + 2)
        .min(frames.len());
    let body = frames.split_off(cut);
    let result = match body.len() {
        1 => Ok(body.into_iter().next().expect("one frame")),
        0 => Err("empty message: expected one JSON object".to_owned()),
        n => Err(format!(
            "expected one JSON object per message, got {n} frames"
        )),
    };
    (frames, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn envelopes_of_req_and_dealer_clients_are_sent_back_whole() {
        // REQ, or DEALER with the empty delimiter.
        let (env, body) = split_envelope(f(&["id", "", "{}"]));
        assert_eq!((env, body), (f(&["id", ""]), Ok(b"{}".to_vec())));
        // DEALER without the delimiter.
        let (env, body) = split_envelope(f(&["id", "{}"]));
        assert_eq!((env, body), (f(&["id"]), Ok(b"{}".to_vec())));
        // Several bodies or none: refused, but the envelope still answers.
        let (env, body) = split_envelope(f(&["id", "", "{}", "{}"]));
        assert_eq!(env, f(&["id", ""]));
        assert!(body.unwrap_err().contains("got 2 frames"));
        let (env, body) = split_envelope(f(&["id", ""]));
        assert_eq!(env, f(&["id", ""]));
        assert!(body.unwrap_err().contains("empty message"));
        let (env, body) = split_envelope(f(&["id"]));
        assert_eq!(env, f(&["id"]));
        assert!(body.is_err());
    }
}
