//! ZeroMQ as Rill uses it.
//!
//! - [`socket`]: every socket Rill opens goes through [`socket::open`], which sets
//!   a finite high-water mark, a linger and (on sockets that may face another
//!   machine, see [`Role::heartbeats`]) ZMTP heartbeats, so no peer can grow
//!   our memory without bound, a stopping process never hangs on unsent
//!   messages, and a dead TCP peer is noticed.
//! - [`proxy`]: the stream proxy. Publishers (taps, parser, masspinger) connect
//!   to the internal bus endpoint (XSUB); clients subscribe at the one public
//!   `streams.endpoint` (XPUB). Subscriptions travel upstream, so publishers
//!   only send what someone asked for.
//! - [`publisher`]: an XPUB on the bus that knows what is subscribed, for a
//!   publisher whose messages cost to make.
//! - [`subscriber`]: a SUB socket that takes MQTT-style patterns, subscribes to
//!   their literal prefixes and filters the rest locally.

pub mod control;
pub mod proxy;
pub mod publisher;
pub mod socket;
pub mod subscriber;

pub use proxy::StreamProxy;
pub use publisher::Publisher;
pub use socket::{open, prepare_endpoint, Role};

pub use subscriber::{Message, Subscriber};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("could not {action} {endpoint}: {source}")]
    Endpoint {
        action: &'static str,
        endpoint: String,
        source: zmq::Error,
    },
    #[error("could not create socket directory {path}: {source}")]
    SocketDir {
        path: String,
        source: std::io::Error,
    },
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("bad topic pattern: {0}")]
    Pattern(#[from] rill_proto::topic::PatternError),
}
