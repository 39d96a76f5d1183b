//! `ssh_tap`: one SSH connection to one host, one channel per followed log.
//!
//! The loop is single-threaded over a non-blocking libssh2 session: read every
//! channel until it would block, publish the lines, and when no channel had
//! anything, poll the TCP socket (100 ms) so a new byte wakes us at once.

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
use crate::follow::{Follow, Io};
use crate::lines::Line;
use crate::status::StatusBoard;

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

    let saved = checkpoint::load(cfg, host);
    let mut follows: Vec<Follow> = logs
        .into_iter()
        .map(|l| {
            let resume = saved.logs.get(&l.name).copied();
            let draining = saved.draining.get(&l.name).cloned().unwrap_or_default();
            Follow::new(l, cfg.tap, resume, draining)
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
    saver.save(&mut follows);

    // Close what we opened so the remote follow scripts end now, not when sshd
    // notices a dead connection.
    conns.blocking(2_000);
    for f in &mut follows {
        f.close();
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
    let mut last_keepalive = Instant::now();
    while !shutdown.requested() {
        let mut progressed = false;
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
                buf: &mut buf,
                lines: &mut lines,
                out,
                board,
                shutdown,
            };
            progressed |= f.pump(&mut io, i)?;
        }
        if last_keepalive.elapsed() >= Duration::from_secs(1) {
            conns.keepalive()?;
            last_keepalive = Instant::now();
            saver.save(follows);
        } else if follows.iter().any(|f| f.identity_changed) {
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
    fn save(&mut self, follows: &mut [Follow]) {
        let mut now = self.saved.clone();
        for f in follows.iter_mut() {
            f.identity_changed = false;
            let (current, draining) = f.positions();
            if let Some(c) = current {
                now.logs.insert(f.log.name.clone(), c);
            }
            if draining.is_empty() {
                now.draining.remove(&f.log.name);
            } else {
                now.draining.insert(f.log.name.clone(), draining);
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

/// The tap's two outputs: the live stream and the parser's ingest queue.
pub struct Outputs {
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

    pub fn publish(
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
