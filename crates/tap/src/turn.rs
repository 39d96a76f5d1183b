//! The tap's loop, one turn at a time: one SSH connection to one host (more
//! when sshd caps channels), one channel per followed log.
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
//! only when something happened, never on a fixed tick (docs/BENCHMARKS.md,
//! section 5, measures what that saves on 200 hosts).
//!
//! A dead connection is noticed by libssh2 errors, by TCP (our keepalives
//! must be acknowledged within [`rill_ssh::connect::TCP_USER_TIMEOUT`]) and by
//! a deadline on bytes received while the channels are being read: every
//! follow script says `RILL-TICK` once per poll interval, however quiet its
//! file.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use rill_process::Shutdown;
use rill_ssh::Pool;
use tracing::warn;

use crate::durable::{Durable, Heard};
use crate::follow::{Follow, Io};
use crate::journal::JournalLog;
use crate::lines::Lines;
use crate::logs::Logs;
use crate::pattern::Pattern;
use crate::publish::Outputs;
use crate::saver::{CheckpointSaver, SAVE_EVERY};
use crate::status::StatusBoard;

/// No byte from the server for this long (at least; three poll intervals
/// when those are longer), while we read, means the connection is dead.
pub const RECEIVE_DEADLINE: Duration = Duration::from_secs(8);
/// How often the connection is checked: keepalive, receive deadline, lags.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

pub fn follow(
    conns: &mut Pool,
    logs: &mut Logs,
    out: &mut Outputs,
    board: &mut StatusBoard,
    saver: &mut CheckpointSaver,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let Logs {
        follows,
        patterns,
        journals,
    } = logs;
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
                    for j in journals.iter_mut() {
                        j.rewind_to_start();
                    }
                }
                _ => {}
            }
            saver.saved.generation = Some(g);
            saver.last = Instant::now() - SAVE_EVERY;
        }
        for p in patterns.iter_mut() {
            if let Err(e) = p.open_due(conns) {
                if e.is_lost() {
                    return Err(anyhow::Error::from(e).context("connection lost"));
                }
                warn!(log = %p.log.name, error = %e, "could not list the pattern's files");
            }
            for pass in p.pump(&mut buf, &mut heard) {
                p.apply(&pass, follows, board);
            }
            p.retire_idle(follows, board, &out.durable);
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
            if f.retired {
                continue;
            }
            if let Err(e) = f.open_due(conns, io.board, &io.out.durable, i) {
                // A broken connection shows up here first; anything else
                // is reported (in the log's status) and retried. A loss the
                // error does not name is heard by the next keepalive.
                if e.downcast_ref::<rill_ssh::Error>()
                    .is_some_and(rill_ssh::Error::is_lost)
                {
                    return Err(e.context("connection lost"));
                }
                warn!(log = %f.log.name, error = %format!("{e:#}"), "could not start following");
            }
            f.pump(&mut io, i)?;
        }
        for j in journals.iter_mut() {
            if let Err(e) = j.open_due(conns, io.board) {
                if e.is_lost() {
                    return Err(anyhow::Error::from(e).context("connection lost"));
                }
                warn!(log = %j.log.name, error = %e, "could not start journalctl");
            }
            j.pump(&mut io)?;
        }
        if last_keepalive.elapsed() >= KEEPALIVE_EVERY {
            conns.keepalive()?;
            last_keepalive = Instant::now();
            let listening = follows.iter().any(Follow::has_channels)
                || patterns.iter().any(Pattern::has_channel)
                || journals.iter().any(JournalLog::has_channel);
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
            saver.save(follows, patterns, journals, &out.durable);
        }
        board.flush(&out.live, false);
        if !follows.iter().any(|f| f.pending(&out.durable))
            && !patterns.iter().any(Pattern::pending)
            && !journals.iter().any(|j| j.pending(&out.durable))
        {
            let now = Instant::now();
            let due = follows
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.next_due(now, &out.durable, i))
                .chain(patterns.iter().filter_map(Pattern::next_due))
                .chain(journals.iter().filter_map(JournalLog::next_due))
                .chain([
                    last_keepalive + KEEPALIVE_EVERY,
                    saver.last + SAVE_EVERY,
                    board.next_due(),
                ])
                .min()
                .unwrap_or(now);
            let reading = follows
                .iter()
                .fold(0, |m, f| m | f.connections(&out.durable))
                | patterns.iter().fold(0, |m, p| m | p.connections())
                | journals
                    .iter()
                    .fold(0, |m, j| m | j.connections(&out.durable));
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
fn wait(conns: &Pool, reading: u32, durable: &Durable, shutdown: &Shutdown, timeout: Duration) {
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
