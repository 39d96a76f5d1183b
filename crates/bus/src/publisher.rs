//! A publisher that knows what is subscribed, so that a message nobody
//! wants is never made (the parser's `parsed/...` events: their JSON cost
//! the parser a fifth of its time in a backlog, subscribed or not).
//!
//! It is an XPUB connected to the bus: the proxy's XSUB sends it every
//! subscription its own subscribers hold (the ones held when it connects
//! too), as `\x01prefix` and `\x00prefix` messages; ZeroMQ passes a prefix
//! once however many subscribe to it, and its removal once the last one
//! left.

use std::collections::HashSet;

use crate::socket::{self, Role};
use crate::BusError;

pub struct Publisher {
    socket: zmq::Socket,
    prefixes: HashSet<Vec<u8>>,
}

impl Publisher {
    /// Connects to the bus endpoint (the stream proxy's XSUB).
    pub fn connect(ctx: &zmq::Context, bus: &str) -> Result<Self, BusError> {
        let s = socket::open(ctx, zmq::XPUB, Role::LiveBus)?;
        socket::connect(&s, bus)?;
        Ok(Publisher {
            socket: s,
            prefixes: HashSet::new(),
        })
    }

    /// Takes the subscription changes that arrived (cheap; call before
    /// deciding whether to make messages).
    pub fn hear(&mut self) {
        hear_subscriptions(&self.socket, &mut self.prefixes);
    }

    /// Whether anyone subscribed to anything (cheaper than making a topic
    /// to ask [`Publisher::wanted`]).
    pub fn any_wanted(&self) -> bool {
        !self.prefixes.is_empty()
    }

    /// Whether some subscriber's prefix matches `topic`.
    pub fn wanted(&self, topic: &[u8]) -> bool {
        self.prefixes.iter().any(|p| topic.starts_with(p))
    }

    /// Sends a message (never blocks: a full queue drops it).
    pub fn send(&self, frames: &[&[u8]]) {
        let _ = self.socket.send_multipart(frames, zmq::DONTWAIT);
    }
}

/// Applies the subscription messages waiting on XPUB `socket`
/// (`\x01prefix`, `\x00prefix`) to `prefixes`, without blocking.
pub fn hear_subscriptions(socket: &zmq::Socket, prefixes: &mut HashSet<Vec<u8>>) {
    while let Ok(m) = socket.recv_bytes(zmq::DONTWAIT) {
        match m.split_first() {
            Some((1, prefix)) => {
                prefixes.insert(prefix.to_vec());
            }
            Some((0, prefix)) => {
                prefixes.remove(prefix);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{StreamProxy, Subscriber};

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < end, "{what} within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_publisher_hears_who_subscribes_through_the_proxy_and_when_they_leave() {
        let dir = tempfile::tempdir().unwrap();
        let bus = format!("ipc://{}/bus.sock", dir.path().display());
        let streams = format!("ipc://{}/streams.sock", dir.path().display());
        let ctx = zmq::Context::new();
        let proxy = StreamProxy::start(&ctx, &bus, &streams).unwrap();
        // A subscriber that was there before the publisher connected.
        let early = Subscriber::connect(&ctx, &streams, &["parsed/+/app"]).unwrap();
        let mut p = Publisher::connect(&ctx, &bus).unwrap();
        until("the early subscription heard", || {
            p.hear();
            p.wanted(b"parsed/web01/app")
        });
        assert!(
            p.wanted(b"parsed/web01/other"),
            "a wildcard subscribes to its prefix; the subscriber filters"
        );
        assert!(!p.wanted(b"line/web01/app"));
        until("a message through", || {
            p.send(&[b"parsed/web01/app", b"{}"]);
            early.recv(Duration::from_millis(20)).unwrap().is_some()
        });
        drop(early);
        until("the subscription gone", || {
            p.hear();
            !p.wanted(b"parsed/web01/app")
        });
        let _all = Subscriber::connect(&ctx, &streams, &["#"]).unwrap();
        until("everything subscribed", || {
            p.hear();
            p.wanted(b"line/web01/app")
        });
        proxy.stop();
    }
}
