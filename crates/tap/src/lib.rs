//! Following remote files over SSH: `ssh_tap` and `robust_ssh_tap`.
//!
//! Data flow inside `ssh_tap` (one process per host, or a thread per host
//! with `tap.hosts_per_process`, see [`group`]):
//!
//! ```text
//! rill_ssh::Pool (TCP, handshake, host key, auth; spills over on MaxSessions)
//!   -> one channel per reader running a script                (script)
//!   -> header "RILL dev ino vlen vfp start mode", then the    (script::Output)
//!      file's bytes: a tail stream or checked chunks
//!   -> LineSplitter: bytes -> lines with exact byte offsets  (lines)
//!   -> LineMeta + raw bytes, published twice:                (publish)
//!        live   PUB  -> bus -> streams endpoint  line/<host>/<log>
//!        ingest DEALER -> parser, through a bounded window    (durable)
//!           full window: the line is left in the file (a gap), and a
//!           catch-up channel reads it again once there is room
//! ```
//!
//! Where things live:
//!
//! - [`run`]: one host's tap from connect to close; [`turn`]: its loop.
//! - [`follow`]: one log's readers (current, finishing, catch-up) as a
//!   state machine over an abstract channel; model tests drive it against
//!   a simulated server.
//! - [`script`]: the remote programs (`script/*.sh`), their command lines
//!   and the one decoder of their output.
//! - [`pattern`]: logs whose path is a pattern: listing the server's files,
//!   choosing which to follow (each then a `follow` of its own).
//! - [`journal`]: logs that are the systemd journal (`journalctl`), named
//!   by cursor.
//! - [`identity`]: which file a reader reads, as line metadata names it.
//! - [`lines`]: splitting a byte stream into lines with offsets.
//! - [`publish`]: lines out, live and durable; [`durable`]: the window to
//!   the parser, gaps and receipts; [`live_marks`]: how far each file was
//!   published live, so a restart does not publish it again.
//! - [`checkpoint`]: the checkpoint file; [`saver`]: when it is written.
//! - [`status`]: what a tap reports (status file + `status/<host>` topic).
//! - [`group`]: several hosts in one process; [`robust`]: the
//!   `robust_ssh_tap` loop; [`restart`]: the restart policy both share.
//!
//! SSH plumbing is in `rill-ssh`; the session-control server, which a tap
//! starts on a thread of its own when the host has a `sessions` block, in
//! `rill-sessions`.

pub mod checkpoint;
pub mod durable;
pub mod follow;
pub mod group;
pub mod identity;
pub mod journal;
pub mod lines;
pub mod live_marks;
pub mod logs;
pub mod pattern;
pub mod publish;
pub mod restart;
pub mod robust;
pub mod run;
pub mod saver;
pub mod script;
pub mod status;
pub mod turn;

pub use group::run as run_taps;
pub use robust::run as run_robust;
pub use run::run as run_tap;
