//! The session server's state: the pool, the open sessions, their output.
//!
//! Shells move one way only: warming -> ready (the pool) -> open (handed to
//! a client, with its own publish socket) -> closing. A `create_session`
//! takes the oldest ready shell, or waits (as a pending create) for the
//! next one to come up; the pool is refilled behind it. Nothing ever goes
//! back to the pool. Answers to requests are in [`super::requests`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rill_bus::gate::Gate;
use rill_config::SessionSettings;
use rill_proto::session::SessionReply;
use rill_proto::SessionsStatus;
use tracing::{debug, info, warn};

use super::reaper::{Reaped, Reaper};
use super::replays::Replays;
use super::shell::{Closer, Output, Shell, Step, Warming};
use rill_ssh::Pool;

/// Largest request accepted; a bigger one gets a `failed` reply.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// A message larger than this makes libzmq drop the connection instead of
/// delivering it (no reply possible). The limit is per message; a client
/// can still queue up to the socket's high-water mark of them.
pub const DROP_ABOVE_BYTES: i64 = 16 << 20;
/// How long a create may wait for a shell to come up.
const PENDING_FOR: Duration = Duration::from_secs(15);
/// How long a send may wait for the connection to take the data.
pub(super) const WRITE_WITHIN: Duration = Duration::from_millis(500);
/// Ended or deleted sessions remembered, to say so instead of "unknown".
pub(super) const REMEMBER_ENDED: usize = 65_536;

/// A session handed to a client.
pub(super) struct OpenSession {
    pub(super) shell: Shell,
    pub(super) client_id: String,
    pub(super) opened: DateTime<Utc>,
    pub(super) bytes_written: u64,
    pub(super) bytes_read: u64,
    pub(super) publisher: zmq::Socket,
    pub(super) topic: String,
    /// Topics subscribed on the publisher now (from XPUB notifications).
    pub(super) subscriptions: HashSet<Vec<u8>>,
}

/// A create waiting for a shell.
pub(super) struct Pending {
    pub(super) envelope: Vec<Vec<u8>>,
    pub(super) unique_id: String,
    pub(super) client_id: String,
    pub(super) since: Instant,
}

pub struct Server {
    pub(super) host: String,
    pub(super) settings: SessionSettings,
    pub(super) ctx: zmq::Context,
    pub(super) gate: Gate,
    pub(super) router: zmq::Socket,
    /// Where the router listens, as bound (the base of publish endpoints).
    pub(super) bound: String,
    pub links: Pool,
    pub(super) warming: Vec<Warming>,
    pub(super) ready: VecDeque<Shell>,
    pub(super) open: BTreeMap<String, OpenSession>,
    pub(super) pending: VecDeque<Pending>,
    pub(super) closer: Closer,
    /// Session ids (shell pids) of retired sessions whose leftovers are to
    /// be killed, and the reaping under way.
    pub(super) reap: Vec<u32>,
    pub(super) reaping: Option<Reaper>,
    /// Why recent sessions are gone (deleted, shell exited), oldest first.
    pub(super) ended: HashMap<String, String>,
    pub(super) ended_order: VecDeque<String>,
    /// unique_ids answered within max_request_age, against replays.
    pub(super) replays: Replays,
    /// Warming failures in a row, and when the next may start.
    pub(super) failures: u32,
    pub(super) next_warm: Instant,
    pub(super) buf: Vec<u8>,
    /// Since when fewer shells than the pool are ready, and whether that
    /// episode was warned about.
    pub(super) pool_short_since: Option<Instant>,
    pub(super) pool_short_warned: Option<Instant>,
}

/// A pool short of ready shells for this long is worth a warning.
const POOL_SHORT_WARN: Duration = Duration::from_secs(10);

impl Server {
    pub fn new(
        host: &str,
        settings: &SessionSettings,
        ctx: zmq::Context,
        gate: Gate,
        router: zmq::Socket,
        links: Pool,
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
            reap: Vec::new(),
            reaping: None,
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            replays: Replays::new(settings.max_request_age),
            failures: 0,
            next_warm: Instant::now(),
            buf: vec![0; 64 * 1024],
            pool_short_since: None,
            pool_short_warned: None,
        }
    }

    /// Waits up to `max` for a request, a subscription or SSH data.
    pub fn wait(&self, max: Duration) {
        let busy = !self.warming.is_empty()
            || !self.pending.is_empty()
            || !self.open.is_empty()
            || !self.closer.is_empty()
            || !self.reap.is_empty()
            || self.reaping.is_some();
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
        self.pump_reaper();
        self.refill();
        self.closer.pump(&mut self.links.links);
        Ok(())
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
                // sshd's MaxSessions; refill tries again, on another link
                // if this one is full.
                Step::Refused => self.note_refusal(link),
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
    pub(super) fn warm_failed(&mut self, error: &str) {
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
            rill_bus::publisher::hear_subscriptions(&s.publisher, &mut s.subscriptions);
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

    /// sshd refused a channel on `link`: the link notes it, knowing whether
    /// one of its channels is still closing.
    fn note_refusal(&mut self, link: usize) {
        let closing = self.closer.on_link(link);
        let l = &mut self.links.links[link];
        l.refused(closing > 0);
        debug!(link, closing, state = %l.describe(), "server refused another channel");
    }

    /// Moves the reaping on, or starts one for every session retired since.
    fn pump_reaper(&mut self) {
        if let Some(mut r) = self.reaping.take() {
            let link = r.link;
            match r.advance(&mut self.links.links[link], &mut self.buf) {
                Reaped::Pending => self.reaping = Some(r),
                Reaped::Done(ch) => {
                    debug!(sessions = ?r.sids, "leftovers of ended sessions killed");
                    self.closer.push(ch, link);
                }
                Reaped::Refused => {
                    self.note_refusal(link);
                    self.reap.extend(r.sids);
                }
                Reaped::Failed { error, channel } => {
                    warn!(sessions = ?r.sids, error, "could not end what ended sessions left running");
                    if let Some(ch) = channel {
                        self.closer.push(ch, link);
                    }
                }
            }
        }
        // On a link with room only: a slot frees as soon as the retired
        // session's channel is closed; no new connection for a one-off.
        if self.reaping.is_none() && !self.reap.is_empty() {
            if let Some(i) = self.links.pick_existing() {
                let sids = std::mem::take(&mut self.reap);
                self.reaping = Some(Reaper::start(sids, i, &mut self.links.links[i]));
            }
        }
    }

    /// Starts warming shells until ready + warming covers the pool and the
    /// creates waiting.
    fn refill(&mut self) {
        self.watch_pool();
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

    /// Warns (once per episode) when the pool has been short of ready
    /// shells for longer than [`POOL_SHORT_WARN`], with what holds it back.
    fn watch_pool(&mut self) {
        if self.ready.len() >= self.settings.pool {
            self.pool_short_since = None;
            return;
        }
        let since = *self.pool_short_since.get_or_insert_with(Instant::now);
        if since.elapsed() < POOL_SHORT_WARN || self.pool_short_warned == Some(since) {
            return;
        }
        self.pool_short_warned = Some(since);
        let links: Vec<String> = self.links.links.iter().map(|l| l.describe()).collect();
        warn!(
            ready = self.ready.len(),
            pool = self.settings.pool,
            warming = self.warming.len(),
            pending = self.pending.len(),
            open = self.open.len(),
            closing = self.closer.len(),
            next_warm_in_ms = self.next_warm.saturating_duration_since(Instant::now()).as_millis() as u64,
            links = ?links,
            "the shell pool has been short for {} s",
            POOL_SHORT_WARN.as_secs()
        );
    }

    /// Puts the counts into `report` (for the tap's status) when they
    /// changed.
    pub fn report(&self, report: &crate::SessionsReport) {
        let (open, ready) = (self.open.len(), self.ready.len());
        if let Ok(mut r) = report.lock() {
            if !r
                .as_ref()
                .is_some_and(|s| s.open == open && s.ready == ready)
            {
                *r = Some(SessionsStatus {
                    endpoint: self.bound.clone(),
                    open,
                    ready,
                    max: self.settings.max,
                    pool: self.settings.pool,
                });
            }
        }
    }

    pub(super) fn reply(&self, mut envelope: Vec<Vec<u8>>, reply: SessionReply) {
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
        let mut sids = std::mem::take(&mut self.reap);
        sids.extend(self.reaping.take().map(|r| r.sids).unwrap_or_default());
        for (_, s) in open {
            sids.push(s.shell.pid);
            self.closer.push(s.shell.channel, s.shell.link);
        }
        for shell in std::mem::take(&mut self.ready) {
            self.closer.push(shell.channel, shell.link);
        }
        self.warming.clear();
        self.closer.abandon();
        // What the sessions started and that ignores the hangup.
        if !sids.is_empty() {
            let script = super::reaper::command(&sids);
            if let Err(e) = self.links.run_blocking(&script, Duration::from_secs(2)) {
                warn!(sessions = ?sids, error = %format!("{e:#}"), "could not end what the sessions left running");
            }
        }
        self.links
            .disconnect(Duration::from_secs(1), "rill ssh_tap sessions stopping");
    }
}
