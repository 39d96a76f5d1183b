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
//! - [`federation`]: the endpoint other collectors take this one's streams
//!   from (a ROUTER: each downstream is sent what it asked for except what
//!   came from it); [`upstream`] is the taking side.
//! - [`gate`]: who may connect to a listening socket (sessions, streams): a
//!   ZAP handler with a CIDR allowlist and PLAIN logins or CURVE keys, which
//!   counts what it refuses. [`client_auth`] is the client's side (set
//!   before connecting); [`keys`] is the one file format of CURVE keys
//!   (`rill keygen` writes it, the gate and clients read it). libzmq here
//!   has CURVE through its bundled TweetNaCl (`vendor/zeromq-src`).

pub mod client_auth;
pub mod control;
pub mod federation;
#[cfg(test)]
mod federation_tests;
pub mod gate;
#[cfg(test)]
mod gate_tests;
pub mod keys;
pub mod monitor;
pub mod proxy;
pub mod publisher;
pub mod socket;
pub mod subscriber;
pub mod upstream;

pub use proxy::StreamProxy;
pub use publisher::Publisher;
pub use socket::{open, prepare_endpoint, Role};

pub use subscriber::{Message, Subscriber};

pub use client_auth::{ClientAuth, CurveClient};
pub use gate::{CurveServer, Gate, GateError, Policy};
pub use keys::{Key, KeyError, KeyPair};

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
    #[error("{0}")]
    Config(String),
}
