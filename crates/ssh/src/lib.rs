//! SSH plumbing shared by the tap's followers and the session server.
//!
//! - [`connect`]: one authenticated connection: TCP with a deadline,
//!   handshake, host key policy, authentication.
//! - [`hostkey`]: strict / accept-new checking against known_hosts files.
//! - [`jump`]: hosts reached through another host's connection
//!   (`direct-tcpip`), one connection per jump host shared by its targets.
//! - [`pool`]: the connections to one host, spilling over to another
//!   connection when sshd refuses channels (`MaxSessions`).
//! - [`error`]: a pool's errors, and whether the connection survives them.
//! - [`remote`]: the command line that runs a `sh` script under any login
//!   shell, its values as positional parameters.

pub mod connect;
pub mod error;
pub mod hostkey;
pub mod jump;
pub mod pool;
pub mod remote;

pub use connect::{connect, ConnectError};
pub use error::{Error, CHANNEL_FAILURE, EAGAIN};
pub use pool::{Link, Opening, Pool};
