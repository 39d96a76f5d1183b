//! Following remote files over SSH.
//!
//! Data flow inside `ssh_tap` (one process per host, or a thread per host
//! with `tap.hosts_per_process`, see [`group`]):
//!
//! ```text
//! connect (TCP, handshake, host key, auth)
//!   -> one exec channel per log running the follow script   (remote)
//!   -> header "RILL dev ino vlen vfp start mode", then the    (remote::Header)
//!      file's bytes: a tail stream or checked chunks         (frames)
//!   -> LineSplitter: bytes -> lines with exact byte offsets  (lines)
//!   -> LineMeta + raw bytes, published twice:                (publish)
//!        live   PUB  -> bus -> streams endpoint  line/<host>/<log>
//!        ingest DEALER -> parser, through a bounded window    (durable)
//!           full window: the line is left in the file (a gap), and a
//!           catch-up channel reads it again once there is room
//! ```
//!
//! - [`connect`]: TCP with a deadline, handshake, host key policy, auth.
//! - [`hostkey`]: strict / accept-new checking against known_hosts files.
//! - [`remote`]: shell quoting and the portable follow script.
//! - [`frames`]: the script's output -> file bytes and control records.
//! - [`follow`]: one log's readers: current, draining, finishing, catching
//!   up; identity.
//! - [`checkpoint`]: where each log was read up to, for restarts.
//! - [`lines`]: splitting a byte stream into lines with offsets.
//! - [`tap`]: the `ssh_tap` loop; [`group`]: several hosts in one process;
//!   [`robust`]: the `robust_ssh_tap` loop.
//! - [`status`]: what a tap reports (status file + `status/<host>` topic).
//! - [`sessions`]: the session-control protocol server (a thread of its own,
//!   started by the tap when the host has a `sessions` block).

pub mod checkpoint;
pub mod connect;
pub mod connections;
pub mod durable;
pub mod follow;
pub mod frames;
pub mod group;
pub mod hostkey;
pub mod lines;
pub mod remote;
pub mod robust;
pub mod sessions;
pub mod status;
pub mod tap;

pub use connect::{connect, ConnectError};
pub use group::run as run_taps;
pub use robust::run as run_robust;
pub use tap::run as run_tap;
