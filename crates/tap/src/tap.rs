//! `ssh_tap`: one SSH connection to one host, one channel per followed log.
//!
//! The loop is single-threaded over a non-blocking libssh2 session: read every
//! channel until it would block, publish the lines, and when no channel had
//! anything, poll the TCP socket (100 ms) so a new byte wakes us at once.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use rill_bus::socket::{self, Role};
use rill_config::{Config, Log};
use rill_process::Shutdown;
use rill_proto::{FileId, LineMeta, Topic};
use ssh2::Channel;
use tracing::{debug, error, info, warn};

use crate::checkpoint::{self, Checkpoints, LogCheckpoint};
use crate::connections::Connections;
use crate::lines::{Line, LineSplitter, DEFAULT_MAX_LINE};
use crate::remote::{self, Header, StartAt};
use crate::status::StatusBoard;

/// How long to wait before reopening a log whose follow script ended.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

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

    let saved = checkpoint::load(cfg, host);
    let mut follows: Vec<Follow> = logs
        .into_iter()
        .map(|l| {
            let resume = saved.logs.get(&l.name).copied();
            Follow::new(l, resume)
        })
        .collect();
    let mut saver = CheckpointSaver { cfg, host, saved };
    let result = follow_loop(
        &mut conns,
        &mut follows,
        &mut out,
        &mut board,
        &mut saver,
        shutdown,
    );
    saver.save(&follows);

    // Close what we opened so the remote follow scripts end now, not when sshd
    // notices a dead connection.
    conns.blocking(2_000);
    for f in &mut follows {
        if let Some(mut ch) = f.channel.take() {
            let _ = ch.close();
        }
    }
    conns.disconnect();
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
    let mut last_keepalive = Instant::now();
    while !shutdown.requested() {
        let mut progressed = false;
        for (i, f) in follows.iter_mut().enumerate() {
            if f.channel.is_none() && f.reopen_at.is_some_and(|t| Instant::now() >= t) {
                if let Err(e) = f.open(conns) {
                    // A broken connection shows up here first; anything else
                    // is reported and retried.
                    if !conns.alive() {
                        return Err(e.context("connection lost"));
                    }
                    warn!(log = %f.log.name, error = %format!("{e:#}"), "could not start following");
                    board.log(i).error = Some(format!("{e:#}"));
                    f.reopen_at = Some(Instant::now() + REOPEN_AFTER * 5);
                    continue;
                }
                board.log(i).error = None;
            }
            progressed |= f.pump(&mut buf, &mut lines, out, board, i, shutdown)?;
        }
        if last_keepalive.elapsed() >= Duration::from_secs(1) {
            conns.keepalive()?;
            last_keepalive = Instant::now();
            saver.save(follows);
        }
        board.flush(&out.live, false);
        if !progressed {
            conns.wait_readable(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Writes the checkpoint file when a log's position changed.
struct CheckpointSaver<'a> {
    cfg: &'a Config,
    host: &'a str,
    saved: Checkpoints,
}

impl CheckpointSaver<'_> {
    fn save(&mut self, follows: &[Follow]) {
        let mut now = self.saved.clone();
        for f in follows {
            if let Some((file_id, splitter)) = &f.following {
                now.logs.insert(
                    f.log.name.clone(),
                    LogCheckpoint {
                        file_id: *file_id,
                        offset: splitter.next_offset(),
                    },
                );
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

/// One followed log on this host.
struct Follow {
    log: Log,
    channel: Option<Channel>,
    /// Bytes of the header not yet complete.
    head: Vec<u8>,
    /// Set once the header arrived.
    following: Option<(FileId, LineSplitter)>,
    stderr: Vec<u8>,
    reopen_at: Option<Instant>,
    /// Where to resume when reopening.
    resume: Option<LogCheckpoint>,
}

impl Follow {
    fn new(log: Log, resume: Option<LogCheckpoint>) -> Self {
        Follow {
            log,
            channel: None,
            head: Vec::new(),
            following: None,
            stderr: Vec::new(),
            reopen_at: Some(Instant::now()),
            resume,
        }
    }

    fn open(&mut self, conns: &mut Connections) -> anyhow::Result<()> {
        let start = match self.resume {
            Some(c) => StartAt::Resume {
                ino: c.file_id.ino,
                offset: c.offset,
            },
            None => StartAt::End,
        };
        let ch = conns.exec(&remote::follow_command(&self.log.path, start))?;
        debug!(log = %self.log.name, path = %self.log.path, ?start, "following");
        self.channel = Some(ch);
        self.head.clear();
        self.following = None;
        self.stderr.clear();
        self.reopen_at = None;
        Ok(())
    }

    /// Reads what the channel has; returns whether anything happened.
    fn pump(
        &mut self,
        buf: &mut [u8],
        lines: &mut Vec<Line>,
        out: &mut Outputs,
        board: &mut StatusBoard,
        i: usize,
        shutdown: &Shutdown,
    ) -> anyhow::Result<bool> {
        let Some(mut ch) = self.channel.take() else {
            return Ok(false);
        };
        let result = self.pump_channel(&mut ch, buf, lines, out, board, i, shutdown);
        if self.reopen_at.is_none() {
            self.channel = Some(ch);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn pump_channel(
        &mut self,
        ch: &mut Channel,
        buf: &mut [u8],
        lines: &mut Vec<Line>,
        out: &mut Outputs,
        board: &mut StatusBoard,
        i: usize,
        shutdown: &Shutdown,
    ) -> anyhow::Result<bool> {
        let mut progressed = false;
        // Bounded per turn so one busy log cannot starve the others.
        for _ in 0..64 {
            match ch.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    progressed = true;
                    let read_at = Utc::now();
                    let data = &buf[..n];
                    let data = if self.following.is_none() {
                        self.take_header(data, board, i)?
                    } else {
                        data
                    };
                    if let Some((file_id, splitter)) = &mut self.following {
                        splitter.feed(data, lines);
                        let st = board.log(i);
                        st.file_id = Some(*file_id);
                        for line in lines.drain(..) {
                            out.publish(&self.log, *file_id, &line, read_at, shutdown)?;
                            st.lines_read += 1;
                        }
                        st.last_offset = Some(splitter.next_offset());
                        self.resume = Some(LogCheckpoint {
                            file_id: *file_id,
                            offset: splitter.next_offset(),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    return Err(anyhow!(e).context(format!("reading {} failed", self.log.path)))
                }
            }
        }
        match ch.stderr().read(buf) {
            Ok(n) if n > 0 => {
                progressed = true;
                self.stderr.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&self.stderr).trim().to_owned();
                warn!(log = %self.log.name, stderr = %text, "remote follow script complained");
                board.log(i).error = Some(text);
                self.stderr.clear();
            }
            _ => {}
        }
        if ch.eof() {
            let _ = ch.close();
            let status = ch.exit_status().unwrap_or(-1);
            warn!(log = %self.log.name, status, "remote follow script ended; reopening");
            let st = board.log(i);
            if st.error.is_none() {
                st.error = Some(format!("follow script ended with status {status}"));
            }
            self.reopen_at = Some(Instant::now() + REOPEN_AFTER);
            progressed = true;
        }
        Ok(progressed)
    }

    /// Consumes header lines; returns the file bytes that followed them.
    fn take_header<'a>(
        &mut self,
        data: &'a [u8],
        board: &mut StatusBoard,
        i: usize,
    ) -> anyhow::Result<&'a [u8]> {
        let mut data = data;
        while self.following.is_none() {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                self.head.extend_from_slice(data);
                return Ok(&[]);
            };
            self.head.extend_from_slice(&data[..nl]);
            data = &data[nl + 1..];
            match remote::parse_header(&self.head)? {
                Header::Waiting => {
                    info!(log = %self.log.name, path = %self.log.path, "waiting for the file to appear");
                    board.log(i).error = Some(format!(
                        "{} does not exist yet; waiting for it",
                        self.log.path
                    ));
                }
                Header::Following { mut file_id, start } => {
                    // The server accepted our resume point: same file. Keep
                    // its identity even if its fingerprint was taken while the
                    // file was shorter than the fingerprinted prefix.
                    if let Some(prev) = self
                        .resume
                        .filter(|c| c.file_id.ino == file_id.ino && c.offset == start && start > 0)
                    {
                        file_id = prev.file_id;
                    }
                    info!(log = %self.log.name, %file_id, start, "following file");
                    let st = board.log(i);
                    st.error = None;
                    st.file_id = Some(file_id);
                    st.last_offset = Some(start);
                    self.following = Some((file_id, LineSplitter::new(start, DEFAULT_MAX_LINE)));
                }
            }
            self.head.clear();
        }
        Ok(data)
    }
}

/// The tap's two outputs: the live stream and the parser's ingest queue.
struct Outputs {
    host: String,
    live: zmq::Socket,
    ingest: zmq::Socket,
    epoch: String,
    seq: u64,
}

impl Outputs {
    fn connect(ctx: &zmq::Context, cfg: &Config, host: &str) -> anyhow::Result<Self> {
        let live = socket::open(ctx, zmq::PUB, Role::Live)?;
        socket::connect(&live, &cfg.bus_endpoint())?;
        let ingest = socket::open(ctx, zmq::PUSH, Role::Ingest)?;
        ingest.set_sndtimeo(200)?;
        socket::connect(&ingest, &cfg.ingest_endpoint())?;
        Ok(Outputs {
            host: host.to_owned(),
            live,
            ingest,
            epoch: uuid::Uuid::new_v4().to_string(),
            seq: 0,
        })
    }

    fn publish(
        &mut self,
        log: &Log,
        file_id: FileId,
        line: &Line,
        read_at: chrono::DateTime<Utc>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let meta = LineMeta {
            host: self.host.clone(),
            log: log.name.clone(),
            path: log.path.clone(),
            file_id,
            offset: line.offset,
            seq: self.seq,
            epoch: self.epoch.clone(),
            read_at,
            partial: line.partial,
        };
        self.seq += 1;
        let topic = Topic::Line {
            host: &self.host,
            log: &log.name,
        }
        .to_string();
        let json = serde_json::to_vec(&meta)?;
        let frames: [&[u8]; 3] = [topic.as_bytes(), &json, &line.bytes];
        // Live path: never blocks; a full subscriber queue drops.
        let _ = self.live.send_multipart(frames, zmq::DONTWAIT);
        // Durable path: blocks while the parser's queue is full, so the tap
        // stops reading instead of buffering.
        loop {
            match self.ingest.send_multipart(frames, 0) {
                Ok(()) => return Ok(()),
                Err(zmq::Error::EAGAIN) if !shutdown.requested() => continue,
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
