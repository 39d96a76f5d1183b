//! `ssh_tap`: one SSH connection to one host, one channel per followed log.
//!
//! The loop is single-threaded over a non-blocking libssh2 session: read every
//! channel until it would block, publish the lines (live and durable), and
//! when nothing happened, wait (100 ms at most) for the SSH sockets or a
//! receipt from the parser. While the durable window is full the channels
//! are not read at all: the parser is behind, and the files on the server
//! hold what is not read yet.
//!
//! A dead connection is noticed by libssh2 errors, by TCP (our keepalives
//! must be acknowledged within [`crate::connect::TCP_USER_TIMEOUT`]) and by
//! a deadline on bytes received while the channels are being read: every
//! follow script says `RILL-TICK` once per poll interval, however quiet its
//! file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use rill_bus::socket::{self, Role};
use rill_config::{Config, Log};
use rill_process::Shutdown;
use rill_proto::{FileId, LineMeta, Topic};
use tracing::{error, info, warn};

use crate::checkpoint::{self, Checkpoints};
use crate::connections::Connections;
use crate::durable::{Durable, Heard};
use crate::follow::{Follow, Io};
use crate::lines::Line;
use crate::status::StatusBoard;

/// No byte from the server for this long (at least; three poll intervals
/// when those are longer), while we read, means the connection is dead.
pub const RECEIVE_DEADLINE: Duration = Duration::from_secs(8);
/// How often checkpoints are saved when only positions moved (a new file
/// followed is saved at once). Each save is a new file and an fsync; a
/// staler position only means more lines read again after a crash, which
/// the index keeps once.
const SAVE_EVERY: Duration = Duration::from_secs(3);

/// Runs the tap for `host` until shutdown or until the connection fails
/// (then it returns the error and `robust_ssh_tap` restarts it).
pub fn run(cfg: &Config, host: &str, shutdown: &Shutdown) -> anyhow::Result<()> {
    let host_cfg = cfg
        .hosts
        .get(host)
        .ok_or_else(|| anyhow!("host {host:?} is not in {}", cfg.file.display()))?;
    let logs: Vec<Log> = cfg.logs_for(host).cloned().collect();
    let ctx = zmq::Context::new();
    let mut out = Outputs::connect(&ctx, cfg, host)?;
    let mut board = StatusBoard::new(cfg, host, &logs);

    let mut conns = match Connections::connect(cfg, host_cfg) {
        Ok(c) => c,
        Err(e) => {
            error!(host, error = %e, "could not connect");
            board.set_connected(false, Some(e.to_string()));
            board.flush(&out.live, true);
            return Err(e.into());
        }
    };
    info!(host, address = %host_cfg.address, port = host_cfg.port, logs = logs.len(), "connected");
    board.set_connected(true, None);
    // The session-control protocol, if configured: its own thread and SSH connection.
    let sessions = crate::sessions::spawn(cfg, host_cfg, shutdown);
    if let Some(s) = &sessions {
        board.watch_sessions(s.report.clone());
    }

    let saved = checkpoint::load(cfg, host);
    let mut follows: Vec<Follow> = logs
        .into_iter()
        .map(|l| {
            let resume = saved.logs.get(&l.name).copied();
            let draining = saved.draining.get(&l.name).cloned().unwrap_or_default();
            let history = saved.history.get(&l.name).cloned().unwrap_or_default();
            Follow::new(l, cfg.tap, resume, draining, history)
        })
        .collect();
    let mut saver = CheckpointSaver {
        cfg,
        host,
        saved,
        last: Instant::now(),
    };
    let result = follow_loop(
        &mut conns,
        &mut follows,
        &mut out,
        &mut board,
        &mut saver,
        shutdown,
    );
    if let Err(e) = &result {
        // Say so now: closing below may take a while on a dead connection.
        let error = format!("{e:#}");
        error!(host, error = %error, "connection lost");
        board.set_connected(false, Some(error));
        board.flush(&out.live, true);
    }
    // Receipts that arrived meanwhile count for the last checkpoint.
    let _ = out.durable.pump();
    saver.save(&mut follows, &out.durable);

    if result.is_ok() {
        // Close what we opened so the remote follow scripts end now, not
        // when sshd notices the connection is gone.
        conns.blocking(2_000);
        for f in &mut follows {
            f.close();
        }
    } else {
        // The server does not answer: a last word, no waiting for replies.
        conns.blocking(300);
    }
    conns.disconnect();
    let result = crate::sessions::finish(sessions, result);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    board.set_connected(false, error.or_else(|| Some("stopped".into())));
    board.flush(&out.live, true);
    result
}

fn follow_loop(
    conns: &mut Connections,
    follows: &mut [Follow],
    out: &mut Outputs,
    board: &mut StatusBoard,
    saver: &mut CheckpointSaver,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    let mut pieces = Vec::new();
    let mut last_keepalive = Instant::now();
    // Since when the channels have been read without pause.
    let mut reading_since = Instant::now();
    let mut heard = Instant::now();
    let deadline = RECEIVE_DEADLINE.max(
        follows
            .first()
            .map_or(Duration::ZERO, |f| f.poll_interval() * 3),
    );
    while !shutdown.requested() {
        for heard in out.durable.pump()? {
            let Heard::Generation(g) = heard;
            match saver.saved.generation.as_deref() {
                Some(old) if old != g => {
                    warn!(old, new = %g, "the index was replaced; reading every known file again from its start");
                    out.durable.restart();
                    for f in follows.iter_mut() {
                        f.rewind_to_start();
                    }
                }
                _ => {}
            }
            saver.saved.generation = Some(g);
            saver.last = Instant::now() - SAVE_EVERY;
        }
        let throttled = out.durable.full();
        let mut progressed = false;
        if throttled {
            reading_since = Instant::now();
            for (i, f) in follows.iter_mut().enumerate() {
                let mut io = Io {
                    heard: &mut heard,
                    buf: &mut buf,
                    lines: &mut lines,
                    pieces: &mut pieces,
                    out,
                    board,
                    shutdown,
                };
                f.peek(&mut io, i);
            }
        } else {
            for (i, f) in follows.iter_mut().enumerate() {
                if let Err(e) = f.open_due(conns, board, i) {
                    // A broken connection shows up here first; anything else
                    // is reported (in the log's status) and retried.
                    if !conns.alive() {
                        return Err(e.context("connection lost"));
                    }
                    warn!(log = %f.log.name, error = %format!("{e:#}"), "could not start following");
                }
                let mut io = Io {
                    heard: &mut heard,
                    buf: &mut buf,
                    lines: &mut lines,
                    pieces: &mut pieces,
                    out,
                    board,
                    shutdown,
                };
                progressed |= f.pump(&mut io, i)?;
                if out.durable.full() {
                    break;
                }
            }
        }
        if last_keepalive.elapsed() >= Duration::from_secs(1) {
            conns.keepalive()?;
            last_keepalive = Instant::now();
            let listening = follows.iter().any(Follow::has_channels);
            if listening && heard.elapsed() > deadline && reading_since.elapsed() > deadline {
                return Err(anyhow!(
                    "nothing from the server for {} s although its scripts report every poll interval; the connection is presumed dead",
                    heard.elapsed().as_secs()
                ));
            }
            if !listening {
                heard = Instant::now();
            }
            for (i, f) in follows.iter().enumerate() {
                let (indexed, lag) = f.lag(i, &out.durable);
                let st = board.log(i);
                st.indexed_offset = indexed;
                st.lag_bytes = lag;
            }
        }
        if saver.last.elapsed() >= SAVE_EVERY || follows.iter().any(|f| f.identity_changed) {
            saver.save(follows, &out.durable);
        }
        board.flush(&out.live, false);
        if !progressed {
            wait(conns, &out.durable, throttled, Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Waits for a receipt, or (unless `throttled`) for bytes on an SSH socket.
fn wait(conns: &Connections, durable: &Durable, throttled: bool, timeout: Duration) {
    let mut items = vec![durable.socket().as_poll_item(zmq::POLLIN)];
    if !throttled {
        items.extend(
            conns
                .fds()
                .into_iter()
                .map(|fd| zmq::PollItem::from_fd(fd, zmq::POLLIN)),
        );
    }
    // EINTR and friends: just go round again.
    let _ = zmq::poll(&mut items, timeout.as_millis() as i64);
}

/// Writes the checkpoint file when a log's position changed.
struct CheckpointSaver<'a> {
    cfg: &'a Config,
    host: &'a str,
    saved: Checkpoints,
    last: Instant,
}

impl CheckpointSaver<'_> {
    fn save(&mut self, follows: &mut [Follow], durable: &Durable) {
        self.last = Instant::now();
        let mut now = self.saved.clone();
        for (i, f) in follows.iter_mut().enumerate() {
            f.identity_changed = false;
            let (current, unfinished, history) = f.checkpoint(i, durable);
            let name = f.log.name.clone();
            if let Some(c) = current {
                now.logs.insert(name.clone(), c);
            }
            if unfinished.is_empty() {
                now.draining.remove(&name);
            } else {
                now.draining.insert(name.clone(), unfinished);
            }
            if history.is_empty() {
                now.history.remove(&name);
            } else {
                now.history.insert(name, history);
            }
        }
        if now != self.saved {
            match checkpoint::save(self.cfg, self.host, &now) {
                Ok(()) => self.saved = now,
                Err(e) => warn!(error = %e, "could not save checkpoints"),
            }
        }
    }
}

/// The tap's two outputs: the live stream and the durable path to the parser.
pub struct Outputs {
    host: String,
    live: zmq::Socket,
    /// The durable window; its run id is the `epoch` of every line.
    pub durable: Durable,
    /// Per log: the next live sequence number of its topic.
    seq: HashMap<usize, u64>,
}

impl Outputs {
    fn connect(ctx: &zmq::Context, cfg: &Config, host: &str) -> anyhow::Result<Self> {
        let live = socket::open(ctx, zmq::PUB, Role::LiveBus)?;
        socket::connect(&live, &cfg.bus_endpoint())?;
        let durable =
            Durable::connect(ctx, &cfg.ingest_endpoint(), host, cfg.tap.max_unacked_lines)?;
        Ok(Outputs {
            host: host.to_owned(),
            live,
            durable,
            seq: HashMap::new(),
        })
    }

    /// Publishes one line of log number `i`: on its live topic (never
    /// blocks; a full subscriber queue drops) and into the durable window.
    pub fn publish(
        &mut self,
        i: usize,
        log: &Log,
        file_id: FileId,
        line: &Line,
        read_at: chrono::DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let seq = self.seq.entry(i).or_insert(0);
        let meta = LineMeta {
            host: self.host.clone(),
            log: log.name.clone(),
            path: log.path.clone(),
            file_id,
            offset: line.offset,
            seq: *seq,
            epoch: self.durable.epoch().to_owned(),
            read_at,
            partial: line.partial,
        };
        *seq += 1;
        let topic = Topic::Line {
            host: &self.host,
            log: &log.name,
        }
        .to_string();
        let json = serde_json::to_vec(&meta)?;
        let _ = self.live.send_multipart(
            [topic.as_bytes(), &json[..], &line.bytes[..]],
            zmq::DONTWAIT,
        );
        self.durable
            .push(i, file_id, line.offset, json, &line.bytes);
        Ok(())
    }
}
