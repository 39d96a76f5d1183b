//! `ssh_tap`: one SSH connection to one host, one channel per followed log.
//!
//! The loop is single-threaded over a non-blocking libssh2 session: read every
//! channel until it would block, publish the lines (live and durable), then
//! sleep until the SSH sockets have bytes, a receipt comes from the parser,
//! shutdown is asked, or a timer is due (the keepalive once a second, the
//! status report, a checkpoint, a log's reopen or partial line). It does not
//! sleep while libssh2 holds data a read has not taken yet. The live
//! readers never wait for the index: while the durable window is full they
//! go on publishing live, and what they read meanwhile stays in the
//! server's file as a gap that a catch-up channel reads again for the index
//! once the window has room (see [`crate::durable`]).
//!
//! Each turn costs a dozen syscalls whatever it finds, so the loop turns
//! only when something happened: on a collector of 200 hosts it used to turn
//! every 100 ms and once more after every read, and those turns were most of
//! the taps' CPU.
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

use crate::checkpoint::{self, Checkpoints, Verify};
use crate::connections::Connections;
use crate::durable::{Durable, Heard};
use crate::follow::{Follow, Io};
use crate::lines::{Line, Lines};
use crate::status::StatusBoard;

/// No byte from the server for this long (at least; three poll intervals
/// when those are longer), while we read, means the connection is dead.
pub const RECEIVE_DEADLINE: Duration = Duration::from_secs(8);
/// How often checkpoints are saved when only positions moved (a new file
/// followed is saved at once). Each save is a new file and an fsync; a
/// staler position only means more lines read again after a crash, which
/// the index keeps once.
const SAVE_EVERY: Duration = Duration::from_secs(3);
/// How often the connection is checked: keepalive, receive deadline, lags.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

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
    let mut lines = Lines::default();
    let mut pieces = Vec::new();
    let mut last_keepalive = Instant::now();
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
        let mut drained = 0u32;
        let sockets = conns.fds();
        let mut io = Io {
            heard: &mut heard,
            buf: &mut buf,
            lines: &mut lines,
            pieces: &mut pieces,
            out: &mut *out,
            board: &mut *board,
            shutdown,
            drained: &mut drained,
            sockets: &sockets,
        };
        for (i, f) in follows.iter_mut().enumerate() {
            if let Err(e) = f.open_due(conns, io.board, &io.out.durable, i) {
                // A broken connection shows up here first; anything else
                // is reported (in the log's status) and retried.
                if !conns.alive() {
                    return Err(e.context("connection lost"));
                }
                warn!(log = %f.log.name, error = %format!("{e:#}"), "could not start following");
            }
            f.pump(&mut io, i)?;
        }
        if last_keepalive.elapsed() >= KEEPALIVE_EVERY {
            conns.keepalive()?;
            last_keepalive = Instant::now();
            let listening = follows.iter().any(Follow::has_channels);
            if listening && heard.elapsed() > deadline {
                return Err(anyhow!(
                    "nothing from the server for {} s although its scripts report every poll interval; the connection is presumed dead",
                    heard.elapsed().as_secs()
                ));
            }
            if !listening {
                heard = Instant::now();
            }
            board.set_unconfirmed(out.durable.unconfirmed());
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
        let full = out.durable.full();
        if !follows.iter().any(|f| f.pending(full)) {
            let now = Instant::now();
            let due = follows
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.next_due(now, &out.durable, i))
                .chain([
                    last_keepalive + KEEPALIVE_EVERY,
                    saver.last + SAVE_EVERY,
                    board.next_due(),
                ])
                .min()
                .unwrap_or(now);
            let reading = follows.iter().fold(0, |m, f| m | f.connections(full));
            wait(
                conns,
                reading,
                &out.durable,
                shutdown,
                due.saturating_duration_since(now),
            );
        }
    }
    Ok(())
}

/// Waits for a receipt, shutdown, or bytes on the SSH socket of a connection
/// in `reading` (bit N: connection N has a channel to read; a socket no
/// channel reads would stay readable), at most `timeout` (rounded up to
/// whole milliseconds).
///
/// One `poll(2)` on the descriptors, the parser socket's among them: that
/// descriptor only signals new commands to libzmq, so the socket is asked
/// first whether a message is already waiting (a send may have taken the
/// signal), or room for lines it could not take before. `zmq_poll` would
/// make four system calls of the same wait.
fn wait(
    conns: &Connections,
    reading: u32,
    durable: &Durable,
    shutdown: &Shutdown,
    timeout: Duration,
) {
    let socket = durable.socket();
    if socket
        .get_events()
        .is_ok_and(|e| e.contains(zmq::POLLIN) || (durable.unsent() && e.contains(zmq::POLLOUT)))
    {
        return;
    }
    let mut fds = vec![shutdown.wake_fd()];
    fds.extend(socket.get_fd());
    fds.extend(
        conns
            .fds()
            .into_iter()
            .enumerate()
            .filter(|(n, _)| reading & 1 << n != 0)
            .map(|(_, fd)| fd),
    );
    // EINTR and friends: just go round again.
    rill_process::poll_readable(&fds, timeout);
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

    /// Publishes lines of log number `i`, read in one go (one read, or a
    /// backlog's several) from one file: a
    /// live reader's on their live topic (never blocks; a full subscriber
    /// queue drops), one message for each run of consecutive complete lines
    /// (a line sent partial goes alone); and offers every line to the
    /// durable path, one at a time. A catch-up reader's lines go to the
    /// latter only.
    pub fn publish(
        &mut self,
        i: usize,
        log: &Log,
        (file_id, verify): (FileId, Verify),
        lines: &Lines,
        read_at: chrono::DateTime<Utc>,
        source: Source,
    ) -> anyhow::Result<()> {
        let (host, epoch) = (&self.host, self.durable.epoch().to_owned());
        let meta = |line: &Line, seq: u64, lines: u64| LineMeta {
            host: host.clone(),
            log: log.name.clone(),
            path: log.path.clone(),
            file_id,
            offset: line.offset,
            seq,
            lines,
            epoch: epoch.clone(),
            read_at,
            partial: line.partial,
        };
        if source == Source::Live {
            let topic = Topic::Line {
                host: &self.host,
                log: &log.name,
            }
            .to_string();
            let seq = self.seq.entry(i).or_insert(0);
            let mut k = 0;
            while k < lines.len() {
                let n = run_length(lines, k);
                let json = serde_json::to_vec(&meta(&lines.get(k), *seq, n as u64))?;
                let body = lines.joined(k..k + n);
                let _ = self
                    .live
                    .send_multipart([topic.as_bytes(), &json[..], body], zmq::DONTWAIT);
                *seq += n as u64;
                k += n;
            }
        }
        let json =
            |line: &Line| serde_json::to_vec(&meta(line, 0, 1)).expect("line meta serialises");
        self.durable
            .offer((i, file_id, verify), lines, source == Source::CatchUp, json);
        Ok(())
    }
}

/// How many lines from line `from` of `lines` go in one live message:
/// complete lines, each starting right after the previous one's newline; a
/// partial line alone.
fn run_length(lines: &Lines, from: usize) -> usize {
    let mut n = 1;
    while from + n < lines.len() && lines.follows(from + n) {
        n += 1;
    }
    n
}

/// Which kind of reader read a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A reader following a file as it is written (or finishing an old one):
    /// its lines go live, and to the index when the window has room.
    Live,
    /// A reader going back over a gap for the index alone.
    CatchUp,
}
