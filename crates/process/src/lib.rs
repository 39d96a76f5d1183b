//! Child processes as Rill runs them, and the process-wide setup every
//! Rill binary does.
//!
//! A daemon loop sleeps in `poll` until there is work, woken by descriptors:
//!
//! - `shutdown`: [`Shutdown`], a flag raised by SIGTERM or SIGINT that every
//!   daemon loop checks, with a descriptor that becomes readable at the same
//!   time, so a loop can sleep until there is work instead of waking to look.
//! - `child_exits`: [`ChildExits`], a descriptor that becomes readable when a
//!   child exits (SIGCHLD), for the same kind of loop.
//! - `poll`: waiting for descriptors ([`poll_readable`], [`wait_readable`])
//!   and how long a loop may sleep before it looks again ([`sleep_until`]).
//!
//! The children such a loop keeps:
//!
//! - `supervised`: [`Supervised`], one child kept alive: spawned with
//!   `PR_SET_PDEATHSIG` so it dies with its parent ([`die_with_parent`]),
//!   restarted after it exits, stopped with SIGTERM then SIGKILL after a grace
//!   period ([`stop_all`]).
//! - `backoff`: [`Backoff`], the exponential delay between restarts.
//! - `sibling`: [`sibling()`], the path of another Rill binary, found next to
//!   the running one.
//!
//! What a binary sets up first and does last:
//!
//! - `umask`: [`private_files`], files and folders only its user can read;
//!   `files`: [`replace_file`], a file replaced whole (a crash leaves the
//!   old or the new one).
//! - `logging`: [`init_logging`], the stderr subscriber.
//! - `limits`: [`raise_file_limit`] and [`lower_priority`].
//! - `exit`: [`finish`], the error printed once and the exit status.
//!
//! The modules are private and every item is re-exported here, so callers
//! write `rill_process::Shutdown` whichever file holds it.

mod backoff;
mod child_exits;
mod exit;
mod files;
mod limits;
mod logging;
mod poll;
mod shutdown;
mod sibling;
mod supervised;
mod umask;

pub use backoff::Backoff;
pub use child_exits::ChildExits;
pub use exit::finish;
pub use files::replace_file;
pub use limits::{lower_priority, raise_file_limit};
pub use logging::init_logging;
pub use poll::{poll_readable, sleep_until, wait_readable, LOOK_AT_LEAST_EVERY};
pub use shutdown::Shutdown;
pub use sibling::sibling;
pub use supervised::{describe, die_with_parent, stop_all, Supervised};
pub use umask::private_files;
