//! The SSH connections of one tap. Usually one; more when the server caps
//! sessions per connection (OpenSSH `MaxSessions`, 10 by default) and the
//! host has more logs than that: a refused channel spills over to the next
//! connection, opened on demand.

use std::os::unix::io::AsRawFd;

use anyhow::{anyhow, Context};
use rill_config::{Config, Host};
use ssh2::{Channel, ErrorCode, Session};
use tracing::info;

use crate::ConnectError;

/// libssh2's "channel open refused" (e.g. "administratively prohibited").
const CHANNEL_FAILURE: ErrorCode = ErrorCode::Session(-21);
/// libssh2's "would block" in non-blocking mode.
pub const EAGAIN: ErrorCode = ErrorCode::Session(-37);
/// Connections per host at most (16 × MaxSessions channels).
const MAX_CONNECTIONS: usize = 16;
/// How much a server may send on one channel before the tap reads it: what
/// libssh2 buffers per followed file while the tap is paused (libssh2's
/// default is 2 MiB).
const CHANNEL_WINDOW: u32 = 512 * 1024;
const CHANNEL_PACKET: u32 = 32 * 1024;

pub struct Connections<'a> {
    cfg: &'a Config,
    host: &'a Host,
    sessions: Vec<Session>,
}

impl<'a> Connections<'a> {
    /// Opens the first connection.
    pub fn connect(cfg: &'a Config, host: &'a Host) -> Result<Self, ConnectError> {
        let first = crate::connect(cfg, host)?;
        first.set_blocking(false);
        Ok(Connections {
            cfg,
            host,
            sessions: vec![first],
        })
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Starts `command` on a new channel of the first connection that
    /// accepts one, opening another connection when every one refuses.
    /// Returns the channel and the number of its connection.
    pub fn exec(&mut self, command: &str) -> anyhow::Result<(Channel, usize)> {
        let mut i = 0;
        loop {
            if i == self.sessions.len() {
                if self.sessions.len() >= MAX_CONNECTIONS {
                    return Err(anyhow!(
                        "the server refused a new session on all {MAX_CONNECTIONS} connections"
                    ));
                }
                let extra = crate::connect(self.cfg, self.host)?;
                extra.set_blocking(false);
                info!(
                    connections = self.sessions.len() + 1,
                    "server refused another session on each connection; opened one more"
                );
                self.sessions.push(extra);
            }
            let s = &self.sessions[i];
            s.set_blocking(true);
            let opened = s.channel_open("session", CHANNEL_WINDOW, CHANNEL_PACKET, None);
            let result = match opened {
                Ok(mut ch) => ch
                    .exec(command)
                    .map(|()| Some(ch))
                    .context("could not start the remote command"),
                Err(e) if e.code() == CHANNEL_FAILURE => Ok(None),
                Err(e) => Err(anyhow!(e).context("could not open a channel")),
            };
            s.set_blocking(false);
            match result? {
                Some(ch) => return Ok((ch, i)),
                None => i += 1,
            }
        }
    }

    /// Sends a keepalive on every connection; an error means one is dead.
    pub fn keepalive(&self) -> anyhow::Result<()> {
        for s in &self.sessions {
            match s.keepalive_send() {
                Ok(_) => {}
                Err(e) if e.code() == EAGAIN => {}
                Err(e) => return Err(anyhow!(e).context("connection lost (keepalive)")),
            }
        }
        Ok(())
    }

    /// Whether every connection still answers.
    pub fn alive(&self) -> bool {
        self.keepalive().is_ok()
    }

    /// The connections' sockets, to wait on.
    pub fn fds(&self) -> Vec<std::os::unix::io::RawFd> {
        self.sessions.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// Switches every connection to blocking mode with `timeout_ms`, for an
    /// orderly close.
    pub fn blocking(&self, timeout_ms: u32) {
        for s in &self.sessions {
            s.set_blocking(true);
            s.set_timeout(timeout_ms);
        }
    }

    pub fn disconnect(&self) {
        for s in &self.sessions {
            let _ = s.disconnect(None, "rill ssh_tap stopping", None);
        }
    }
}
