//! One way to open a socket, with Rill's limits on it.

use std::path::Path;

use crate::BusError;

/// What a socket is for; decides its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Live stream sockets facing subscribers (the proxy's XPUB, SUB).
    /// Lossy under overload: a slow subscriber loses messages once this many
    /// are queued for it.
    Live,
    /// The live stream inside one machine, publishers to the proxy (PUB,
    /// XSUB). Only fills when the proxy falls behind for a moment, never
    /// because of a subscriber, so it is deep enough for a burst: a tap
    /// catching up publishes thousands of lines in a millisecond.
    LiveBus,
    /// The durable hand-over of lines from taps to the parser (PUSH/PULL).
    /// A full queue blocks the sender, which then stops reading.
    Ingest,
    /// Request/reply control sockets.
    Control,
}

impl Role {
    /// Messages queued per peer and direction before dropping or blocking.
    pub fn hwm(self) -> i32 {
        match self {
            // A `line/` message holds the lines of one read from a channel
            // (up to 64 KiB, more only for one line longer than that):
            // at most ~64 MB queued per stalled subscriber, and at least a
            // thousand lines.
            Role::Live => 1_000,
            // A backlog of 1 M lines of 120 bytes is about 2,000 messages.
            Role::LiveBus => 10_000,
            Role::Ingest => 10_000,
            Role::Control => 1_000,
        }
    }
}

impl Role {
    /// Whether a peer silent for [`HEARTBEAT_TIMEOUT_MS`] is dropped.
    ///
    /// Only on sockets that may face another machine (stream subscribers,
    /// control clients). Not on the links inside the collector (`ipc://` on
    /// one machine: taps to the parser, publishers to the stream proxy),
    /// where a dead peer closes its socket at once, and a peer that is only
    /// slow (a parser starved of CPU) must not be dropped: libzmq still
    /// delivers what the dropped connection had queued (up to the
    /// high-water mark) while the reconnected tap sends its whole window
    /// again on a fresh connection with a fresh high-water mark, so every
    /// drop adds another window's worth to the parser's memory. Heartbeats
    /// there also cost: two pings a second on each of 400 links of a
    /// 200-host collector, each a thread wake in two processes.
    pub fn heartbeats(self) -> bool {
        matches!(self, Role::Live | Role::Control)
    }
}

/// How long unsent messages may delay `close`, in milliseconds.
pub const LINGER_MS: i32 = 1_000;
/// ZMTP heartbeat: ping every 5 s, drop a peer silent for 15 s (a dead
/// subscriber's queue is freed then; pinging every second cost a collector
/// with hundreds of local subscribers more than it saved).
pub const HEARTBEAT_IVL_MS: i32 = 5_000;
pub const HEARTBEAT_TIMEOUT_MS: i32 = 15_000;
pub const HEARTBEAT_TTL_MS: i32 = 30_000;

/// Opens a socket of `kind` with Rill's limits for `role`.
pub fn open(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    role: Role,
) -> Result<zmq::Socket, BusError> {
    let s = ctx.socket(kind)?;
    s.set_sndhwm(role.hwm())?;
    s.set_rcvhwm(role.hwm())?;
    s.set_linger(LINGER_MS)?;
    if role.heartbeats() {
        s.set_heartbeat_ivl(HEARTBEAT_IVL_MS)?;
        s.set_heartbeat_timeout(HEARTBEAT_TIMEOUT_MS)?;
        s.set_heartbeat_ttl(HEARTBEAT_TTL_MS)?;
    }
    s.set_reconnect_ivl(100)?;
    s.set_reconnect_ivl_max(2_000)?;
    Ok(s)
}

/// Makes sure the folder of an `ipc://` endpoint exists (no-op for tcp).
pub fn prepare_endpoint(endpoint: &str) -> Result<(), BusError> {
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir).map_err(|source| BusError::SocketDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Binds, naming the endpoint in the error.
pub fn bind(s: &zmq::Socket, endpoint: &str) -> Result<(), BusError> {
    prepare_endpoint(endpoint)?;
    s.bind(endpoint).map_err(|source| BusError::Endpoint {
        action: "bind",
        endpoint: endpoint.to_owned(),
        source,
    })?;
    // A unix socket is its owner's alone (libzmq makes it under the
    // process's umask, 0700 with Rill's 077; it lives in a 0700 folder).
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Connects, naming the endpoint in the error.
pub fn connect(s: &zmq::Socket, endpoint: &str) -> Result<(), BusError> {
    s.connect(endpoint).map_err(|source| BusError::Endpoint {
        action: "connect to",
        endpoint: endpoint.to_owned(),
        source,
    })
}

/// Waits up to `timeout` for `s` to have a message. A signal arriving during
/// the wait (EINTR) counts as "nothing yet", so daemons see their shutdown
/// flag instead of failing.
pub fn readable(s: &zmq::Socket, timeout: std::time::Duration) -> Result<bool, BusError> {
    match s.poll(zmq::POLLIN, timeout.as_millis() as i64) {
        Ok(n) => Ok(n > 0),
        Err(zmq::Error::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits up to `timeout` until one of `sockets` has a message or one of `fds`
/// is readable. A signal (EINTR) ends the wait early, like an event.
pub fn wait(
    sockets: &[&zmq::Socket],
    fds: &[std::os::fd::RawFd],
    timeout: std::time::Duration,
) -> Result<(), BusError> {
    let mut items: Vec<zmq::PollItem> = sockets
        .iter()
        .map(|s| s.as_poll_item(zmq::POLLIN))
        .chain(
            fds.iter()
                .map(|&fd| zmq::PollItem::from_fd(fd, zmq::POLLIN)),
        )
        .collect();
    // Rounded up: a timeout under 1 ms must not become a busy 0.
    let ms = timeout.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
    match zmq::poll(&mut items, ms) {
        Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
