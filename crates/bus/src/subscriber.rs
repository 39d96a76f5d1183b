//! A SUB socket that understands MQTT-style topic patterns.

use std::time::Duration;

use rill_proto::TopicPattern;

use crate::client_auth::ClientAuth;
use crate::socket::{self, Role};
use crate::BusError;

/// One received multipart message: the topic and the frames after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub frames: Vec<Vec<u8>>,
}

/// Subscribes to the literal prefix of each pattern and drops what the
/// patterns do not match.
pub struct Subscriber {
    socket: zmq::Socket,
    patterns: Vec<TopicPattern>,
}

impl Subscriber {
    pub fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        patterns: &[&str],
    ) -> Result<Self, BusError> {
        Subscriber::connect_with(ctx, endpoint, patterns, &ClientAuth::default())
    }

    /// [`Subscriber::connect`], logging in with `auth` (a gated endpoint).
    pub fn connect_with(
        ctx: &zmq::Context,
        endpoint: &str,
        patterns: &[&str],
        auth: &ClientAuth,
    ) -> Result<Self, BusError> {
        let socket = socket::open(ctx, zmq::SUB, Role::Live)?;
        auth.apply(&socket)?;
        let patterns: Vec<TopicPattern> = patterns
            .iter()
            .map(|p| TopicPattern::parse(p))
            .collect::<Result<_, _>>()?;
        for p in &patterns {
            socket.set_subscribe(p.subscription_prefix().as_bytes())?;
        }
        socket::connect(&socket, endpoint)?;
        Ok(Self { socket, patterns })
    }

    /// The next matching message, or `None` if none arrived within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Message>, BusError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !socket::readable(&self.socket, left)? {
                return Ok(None);
            }
            // Not a blocking recv: a signal (SIGCHLD in the supervisor and
            // robust_ssh_tap) could end it with EINTR.
            let mut parts = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(p) => p,
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if parts.is_empty() {
                continue;
            }
            let topic = String::from_utf8_lossy(&parts.remove(0)).into_owned();
            if self.patterns.iter().any(|p| p.matches(&topic)) {
                return Ok(Some(Message {
                    topic,
                    frames: parts,
                }));
            }
        }
    }

    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamProxy;

    /// A publisher connected to the bus reaches a wildcard subscriber on the
    /// public endpoint, and messages that only share the prefix are filtered.
    #[test]
    fn proxy_forwards_and_subscriber_filters_by_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let bus = format!("ipc://{}/bus.sock", dir.path().display());
        let streams = format!("ipc://{}/streams.sock", dir.path().display());
        let ctx = zmq::Context::new();
        let proxy = StreamProxy::start(&ctx, &bus, &streams).unwrap();
        let sub = Subscriber::connect(&ctx, &streams, &["line/+/app"]).unwrap();
        let publisher = socket::open(&ctx, zmq::PUB, Role::Live).unwrap();
        socket::connect(&publisher, &bus).unwrap();

        // Subscriptions propagate asynchronously: publish until one arrives.
        let mut got = None;
        for _ in 0..200 {
            publisher
                .send_multipart(["line/web01/other".as_bytes(), b"x"], 0)
                .unwrap();
            publisher
                .send_multipart(["line/web01/app".as_bytes(), b"hello"], 0)
                .unwrap();
            if let Some(m) = sub.recv(Duration::from_millis(20)).unwrap() {
                got = Some(m);
                break;
            }
        }
        let m = got.expect("a message through the proxy");
        assert_eq!(m.topic, "line/web01/app");
        assert_eq!(m.frames, vec![b"hello".to_vec()]);
        proxy.stop();
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let ctx = zmq::Context::new();
        assert!(matches!(
            Subscriber::connect(&ctx, "ipc:///tmp/none", &["line/#/x"]),
            Err(BusError::Pattern(_))
        ));
    }
}
