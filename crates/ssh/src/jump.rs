//! Hosts reached through another host (`hosts.<name>.jump`): the target's
//! SSH connection runs inside a `direct-tcpip` channel of the jump host's
//! connection, as OpenSSH's `ProxyJump` does.
//!
//! libssh2 needs a socket, not a channel: each tunnel is a Unix socket pair
//! whose one end the target's session uses, while a thread per jump host
//! (a [`Hub`]) moves bytes between the other ends and the channels. Every
//! target reached through one jump host in this process shares that one
//! connection; a jump host may itself have a jump host (the hub connects
//! through that one's hub). When the jump connection fails, every tunnel
//! through it closes (their sessions see the end of their socket, and their
//! taps reconnect), and the next tunnel asked for connects again.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_config::{Config, Host};
use ssh2::{Channel, Session};
use tracing::{info, warn};

use crate::connect::{ConnectError, SSH_TIMEOUT_MS};

/// Bytes moved per tunnel and direction in one turn of a hub.
const CHUNK: usize = 64 * 1024;
/// How often a hub sends a keepalive on its connection.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);

/// The hubs of this process, by jump host name.
static HUBS: Mutex<BTreeMap<String, Arc<Hub>>> = Mutex::new(BTreeMap::new());

/// A request to a hub: a tunnel to (address, port), answered on `reply`.
struct Ask {
    address: String,
    port: u16,
    reply: Sender<Result<UnixStream, String>>,
}

/// One jump host's connection, serving tunnels on a thread of its own.
pub struct Hub {
    name: String,
    asks: Mutex<Sender<Ask>>,
    /// Written to wake the thread when an ask is queued.
    wake: UnixStream,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Hub {
    /// A tunnel to `address:port` as the jump host sees it.
    fn tunnel(&self, address: &str, port: u16) -> Result<UnixStream, String> {
        let (reply, answer) = mpsc::channel();
        self.asks
            .lock()
            .map_err(|_| "the jump host's thread failed".to_owned())?
            .send(Ask {
                address: address.to_owned(),
                port,
                reply,
            })
            .map_err(|_| format!("the connection to jump host {} is gone", self.name))?;
        let _ = (&self.wake).write(&[1]);
        answer
            .recv_timeout(Duration::from_millis(u64::from(SSH_TIMEOUT_MS) * 2))
            .map_err(|_| format!("jump host {} did not open the tunnel in time", self.name))?
    }
}

/// A socket to `target`'s SSH port through its jump host (`target.jump`),
/// connecting to the jump host (through its own jump host, if any) when no
/// live connection to it is shared yet.
pub fn tunnel(cfg: &Config, target: &Host) -> Result<UnixStream, ConnectError> {
    let jump = target.jump.as_deref().expect("a host with a jump host");
    let fail = |reason: String| ConnectError::Jump {
        jump: jump.to_owned(),
        target: target.name.clone(),
        reason,
    };
    let hub = hub(cfg, jump)?;
    hub.tunnel(&target.address, target.port).map_err(fail)
}

/// The live hub of `jump`, or a new one.
fn hub(cfg: &Config, jump: &str) -> Result<Arc<Hub>, ConnectError> {
    let live = |hubs: &BTreeMap<String, Arc<Hub>>| {
        hubs.get(jump)
            .filter(|h| h.alive.load(std::sync::atomic::Ordering::SeqCst))
            .cloned()
    };
    if let Some(h) = live(&HUBS.lock().unwrap_or_else(|p| p.into_inner())) {
        return Ok(h);
    }
    // Connect without holding the map: a jump host behind another one asks
    // for that one's hub meanwhile.
    let fail = |reason: String| ConnectError::Jump {
        jump: jump.to_owned(),
        target: String::new(),
        reason,
    };
    let host = cfg
        .hosts
        .get(jump)
        .ok_or_else(|| fail("no such host".into()))?;
    let session = crate::connect(cfg, host)?;
    let mut hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = live(&hubs) {
        // Another thread connected first: use its connection.
        let _ = session.disconnect(None, "rill: not needed", None);
        return Ok(h);
    }
    info!(jump, "connected to the jump host");
    let (tx, rx) = mpsc::channel();
    let (wake, woken) = UnixStream::pair().map_err(|e| fail(e.to_string()))?;
    let _ = woken.set_nonblocking(true);
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let h = Arc::new(Hub {
        name: jump.to_owned(),
        asks: Mutex::new(tx),
        wake,
        alive: alive.clone(),
    });
    let name = jump.to_owned();
    std::thread::Builder::new()
        .name(format!("jump {jump}"))
        .spawn(move || {
            if let Err(e) = serve(&session, &rx, &woken) {
                warn!(jump = %name, error = %e, "the connection to the jump host ended; its tunnels close");
            }
            alive.store(false, std::sync::atomic::Ordering::SeqCst);
            let _ = session.disconnect(None, "rill: jump host connection closing", None);
        })
        .map_err(|e| fail(e.to_string()))?;
    // The thread holds the connection while it has tunnels (and a minute
    // after the last); the map keeps the way to ask it.
    hubs.insert(jump.to_owned(), h.clone());
    Ok(h)
}

/// One tunnel: its channel, its end of the socket pair, and what could not
/// be written yet either way.
struct Tunnel {
    channel: Channel,
    local: UnixStream,
    to_channel: Vec<u8>,
    to_local: Vec<u8>,
    local_eof: bool,
    channel_eof: bool,
}

/// The hub's loop: opens the tunnels asked for, moves bytes, keeps the
/// connection alive; returns when the connection fails.
fn serve(session: &Session, asks: &Receiver<Ask>, woken: &UnixStream) -> anyhow::Result<()> {
    session.set_keepalive(false, 2);
    let mut tunnels: Vec<Tunnel> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut last_keepalive = Instant::now();
    // The hub lives while it has tunnels or someone may still ask.
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut drained = [0u8; 64];
        while matches!((&*woken).read(&mut drained), Ok(n) if n > 0) {}
        while let Ok(ask) = asks.try_recv() {
            session.set_blocking(true);
            session.set_timeout(SSH_TIMEOUT_MS);
            let opened = session
                .channel_direct_tcpip(&ask.address, ask.port, None)
                .map_err(|e| {
                    format!(
                        "could not open a tunnel to {}:{}: {e}",
                        ask.address, ask.port
                    )
                })
                .and_then(|channel| {
                    let (theirs, local) = UnixStream::pair().map_err(|e| e.to_string())?;
                    local.set_nonblocking(true).map_err(|e| e.to_string())?;
                    tunnels.push(Tunnel {
                        channel,
                        local,
                        to_channel: Vec::new(),
                        to_local: Vec::new(),
                        local_eof: false,
                        channel_eof: false,
                    });
                    Ok(theirs)
                });
            session.set_blocking(false);
            let _ = ask.reply.send(opened);
        }
        for t in &mut tunnels {
            pump(t, &mut buf)?;
        }
        tunnels.retain_mut(|t| {
            let done = t.local_eof && t.channel_eof && t.to_local.is_empty();
            if done {
                let _ = t.channel.close();
            }
            !done
        });
        if last_keepalive.elapsed() >= KEEPALIVE_EVERY {
            match session.keepalive_send() {
                Ok(_) => {}
                Err(e) if e.code() == crate::EAGAIN => {}
                Err(e) => anyhow::bail!("keepalive: {e}"),
            }
            last_keepalive = Instant::now();
        }
        if tunnels.is_empty() {
            let since = *idle_since.get_or_insert_with(Instant::now);
            // Nobody has used the connection for a while: close it (the
            // next target that needs it connects again).
            if since.elapsed() > Duration::from_secs(60) {
                return Ok(());
            }
        } else {
            idle_since = None;
        }
        wait(session, woken, &tunnels);
    }
}

/// Moves what is waiting between one tunnel's channel and socket end.
fn pump(t: &mut Tunnel, buf: &mut [u8]) -> anyhow::Result<()> {
    // Socket -> channel.
    if t.to_channel.is_empty() && !t.local_eof {
        match t.local.read(buf) {
            Ok(0) => {
                t.local_eof = true;
                let _ = t.channel.send_eof();
            }
            Ok(n) => t.to_channel.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => t.local_eof = true,
        }
    }
    while !t.to_channel.is_empty() {
        match t.channel.write(&t.to_channel) {
            Ok(0) => break,
            Ok(n) => {
                t.to_channel.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => {
                // The channel is gone (the target closed it); the socket end
                // closes with it.
                t.channel_eof = true;
                t.local_eof = true;
                t.to_channel.clear();
                warn!(error = %e, "a jump tunnel's channel failed");
                break;
            }
        }
    }
    // Channel -> socket.
    if t.to_local.is_empty() && !t.channel_eof {
        match t.channel.read(buf) {
            Ok(0) if t.channel.eof() => {
                t.channel_eof = true;
                let _ = t.local.shutdown(std::net::Shutdown::Write);
            }
            Ok(0) => {}
            Ok(n) => t.to_local.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => t.channel_eof = true,
        }
    }
    while !t.to_local.is_empty() {
        match t.local.write(&t.to_local) {
            Ok(0) => break,
            Ok(n) => {
                t.to_local.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                t.local_eof = true;
                t.to_local.clear();
            }
        }
    }
    Ok(())
}

/// Sleeps until the connection's socket, a tunnel's socket end or the wake
/// socket has something, at most a keepalive interval. Does not sleep
/// while libssh2 or a tunnel holds bytes that could move now.
fn wait(session: &Session, woken: &UnixStream, tunnels: &[Tunnel]) {
    let busy = tunnels.iter().any(|t| {
        (!t.to_channel.is_empty() || !t.to_local.is_empty())
            || (!t.channel_eof && t.channel.read_window().available > 0)
    });
    if busy {
        // Short: the peer's window or our socket buffer frees up soon.
        std::thread::sleep(Duration::from_millis(1));
        return;
    }
    let mut fds: Vec<libc::pollfd> = vec![
        libc::pollfd {
            fd: session.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: woken.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    fds.extend(
        tunnels
            .iter()
            .filter(|t| !t.local_eof)
            .map(|t| libc::pollfd {
                fd: t.local.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }),
    );
    // SAFETY: poll on descriptors this thread owns, for a bounded time.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            KEEPALIVE_EVERY.as_millis() as libc::c_int,
        );
    }
}
