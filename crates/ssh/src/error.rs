//! What can go wrong on a connection, and whether the connection survives it.

use ssh2::ErrorCode;

use crate::ConnectError;

/// libssh2's "would block" in non-blocking mode.
pub const EAGAIN: ErrorCode = ErrorCode::Session(-37);
/// libssh2's "channel open refused" (e.g. "administratively prohibited").
pub const CHANNEL_FAILURE: ErrorCode = ErrorCode::Session(-21);

/// libssh2's codes (`libssh2.h`) that mean the connection itself is gone:
/// the socket failed or closed, or the transport broke. A blocking call
/// that timed out (TIMEOUT, SOCKET_TIMEOUT) is not among them: the server
/// may only be slow, and the next keepalive tells.
const LOST: [i32; 11] = [
    -4,  // INVALID_MAC
    -5,  // KEX_FAILURE
    -7,  // SOCKET_SEND
    -8,  // KEY_EXCHANGE_FAILURE
    -12, // DECRYPT
    -13, // SOCKET_DISCONNECT
    -14, // PROTO
    -43, // SOCKET_RECV
    -44, // ENCRYPT
    -45, // BAD_SOCKET
    -52, // MAC_FAILURE
];

/// An error of a [`crate::Pool`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening another connection failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// sshd refused a channel on each of this many connections.
    #[error(
        "the server refused another session on each of {0} connections \
         (raise sshd's MaxSessions, or lower sessions.max)"
    )]
    Full(usize),
    /// A request on the connection failed.
    #[error("{what}: {cause}")]
    Ssh {
        what: &'static str,
        cause: ssh2::Error,
    },
    /// The connection is gone.
    #[error("connection lost: {0}")]
    Lost(String),
}

impl Error {
    /// A failed request, classed as [`Error::Lost`] when its code says the
    /// connection is gone.
    pub fn ssh(what: &'static str, cause: ssh2::Error) -> Error {
        match cause.code() {
            ErrorCode::Session(code) if LOST.contains(&code) => {
                Error::Lost(format!("{what}: {cause}"))
            }
            _ => Error::Ssh { what, cause },
        }
    }

    /// Whether the connection this came from is gone (the other errors
    /// concern one channel, or a connection that was never opened).
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Lost(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_failure_is_a_lost_connection_and_a_refusal_is_not() {
        let err = |code| ssh2::Error::new(ErrorCode::Session(code), "x");
        assert!(Error::ssh("open", err(-43)).is_lost());
        assert!(Error::ssh("open", err(-13)).is_lost());
        assert!(!Error::ssh("open", err(-21)).is_lost());
        assert!(!Error::ssh("exec", err(-22)).is_lost());
        assert!(!Error::ssh("open", err(-9)).is_lost(), "slow, not gone");
        let shown = format!("{:#}", anyhow::Error::from(Error::ssh("open", err(-22))));
        assert_eq!(shown.matches("[Session(-22)]").count(), 1, "{shown}");
        assert!(!Error::Full(16).is_lost());
    }
}
