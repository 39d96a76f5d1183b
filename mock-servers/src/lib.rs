//! Mock servers for the demo and for fault tests a real sshd cannot produce.
//!
//! - [`EmbeddedSshHost`] (module [`ssh_host`]): a small SSH server on
//!   loopback. Password auth for one user; `exec` requests run through
//!   `/bin/sh -c` as the current OS user with stdin/stdout/stderr wired to the
//!   channel; a closed channel or connection ends its command (SIGKILL to its
//!   process group after a 2 s grace). No PTYs, no shells, no forwarding.
//!   It never replaces OpenSSH in tests of normal behaviour.
//! - [`LogGenerator`] (module [`loggen`]): writes nginx combined-format lines
//!   at a set rate and rotates the file like logrotate's `create` mode.

pub mod loggen;
pub mod ssh_host;

pub use loggen::{nginx_line, LogGenerator, LogGeneratorConfig};
pub use ssh_host::EmbeddedSshHost;
