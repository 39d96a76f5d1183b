//! The schema of everything that crosses a Rill socket, defined once.
//!
//! - [`topic`]: topic names (`line/<host>/<log>`, `parsed/...`, `ping/<host>`,
//!   `status/<host>`), the name rules that keep them unescaped, and MQTT-style
//!   wildcard patterns that clients match locally.
//! - [`message`]: the JSON frames: [`LineMeta`] (frame 2 of a `line/` message, the
//!   raw bytes are frame 3), [`ParsedEvent`], [`Ping`], [`TapStatus`].
//! - [`control`]: requests and replies on the supervisor's control socket.
//! - [`ingest`]: the durable path from taps to the parser and its receipts.
//! - [`session`]: the session-control protocol (JSON on a host's sessions
//!   ROUTER socket) and its strict request checking.
//!
//! Wire format of a live line (ZeroMQ multipart): `[topic, LineMeta JSON, raw bytes]`.
//! On the durable path the same frames follow a `line` frame and precede an
//! [`ingest::Envelope`].

pub mod control;
pub mod ingest;
pub mod message;
pub mod session;
pub mod topic;

pub use control::{
    ApiStatus, ChildReport, ClusterStatus, ControlReply, ControlRequest, DownstreamStatus,
    GuardStatus, HostReport, StatusReport, SubscriberReport, SubscriberStatus, UpstreamStatus,
};
pub use message::{
    line_key, FileId, LineMeta, LogStatus, ParsedEvent, Ping, SessionsStatus, TapStatus,
};
pub use topic::{valid_name, Topic, TopicPattern};
