//! A socket monitor: the connection events libzmq reports for one socket
//! (connected, refused, handshake done), for the clients that must tell a
//! refused login from silence (`rill tail`, `rill session`, an upstream
//! feed). Attach it before the socket connects: libzmq reports a refused
//! login once and does not try that connection again.

/// libzmq's event numbers (the `zmq` crate's `SocketEvent::from_raw`
/// panics on numbers it does not know).
pub mod event {
    pub const CONNECTED: u16 = 0x0001;
    pub const CONNECT_RETRIED: u16 = 0x0004;
    pub const DISCONNECTED: u16 = 0x0200;
    pub const HANDSHAKE_FAILED_NO_DETAIL: u16 = 0x0800;
    pub const HANDSHAKE_SUCCEEDED: u16 = 0x1000;
    pub const HANDSHAKE_FAILED_PROTOCOL: u16 = 0x2000;
    pub const HANDSHAKE_FAILED_AUTH: u16 = 0x4000;

    /// Whether `e` is a handshake that failed.
    pub fn handshake_failed(e: u16) -> bool {
        matches!(
            e,
            HANDSHAKE_FAILED_NO_DETAIL | HANDSHAKE_FAILED_PROTOCOL | HANDSHAKE_FAILED_AUTH
        )
    }
}

/// The events of one socket, read from a PAIR socket in the same context.
pub struct Monitor(zmq::Socket);

impl Monitor {
    /// Watches every event of `s` (before it connects).
    pub fn watch(ctx: &zmq::Context, s: &zmq::Socket) -> zmq::Result<Monitor> {
        // Unique in the process: a socket's address is not (a feed's
        // socket is watched while it sits in the same stack slot as the
        // one before it).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let endpoint = format!("inproc://rill-monitor-{}-{n}", std::process::id());
        s.monitor(&endpoint, zmq::SocketEvent::ALL as i32)?;
        let m = ctx.socket(zmq::PAIR)?;
        m.set_linger(0)?;
        m.connect(&endpoint)?;
        Ok(Monitor(m))
    }

    /// The events since the last call: each event's number and value (a
    /// ZAP status code for a refused login).
    pub fn events(&self) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        while let Ok(frames) = self.0.recv_multipart(zmq::DONTWAIT) {
            if let Some(head) = frames.first().filter(|f| f.len() >= 6) {
                out.push((
                    u16::from_le_bytes([head[0], head[1]]),
                    u32::from_le_bytes([head[2], head[3], head[4], head[5]]),
                ));
            }
        }
        out
    }

    /// The socket to poll for events.
    pub fn socket(&self) -> &zmq::Socket {
        &self.0
    }
}
