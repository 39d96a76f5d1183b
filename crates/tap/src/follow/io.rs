//! What the tap's loop lends every reader for one turn.

use std::os::unix::io::RawFd;
use std::time::Instant;

use rill_process::Shutdown;

use crate::lines::Lines;
use crate::publish::Outputs;
use crate::script::Piece;
use crate::status::StatusBoard;

/// What the loop hands every pump.
pub struct Io<'a> {
    /// When anything (file bytes or a control line) last came from any
    /// channel: the tap's measure of a live connection.
    pub heard: &'a mut Instant,
    pub buf: &'a mut [u8],
    pub lines: &'a mut Lines,
    pub pieces: &'a mut Vec<Piece>,
    pub out: &'a mut Outputs,
    pub board: &'a mut StatusBoard,
    pub shutdown: &'a Shutdown,
    /// Bit N: connection N's socket was read this turn, until it would
    /// block. Reading any channel reads every packet waiting on its
    /// connection; after that only channels with queued data need a read.
    pub drained: &'a mut u32,
    /// Connection N's socket, to wait on for a backlog's next packet.
    pub sockets: &'a [RawFd],
}
