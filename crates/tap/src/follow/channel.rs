//! What a reader reads from: a channel running a script on the server, and
//! what opens one. SSH in the tap ([`rill_ssh::Pool`]), a simulated server
//! in the follow engine's model tests.

use std::io::Read;

use crate::script::Script;

/// One running script's output.
pub trait Channel {
    /// The next bytes of its stdout; `WouldBlock` when none are there.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// The next bytes of its stderr; `WouldBlock` when none are there.
    fn read_stderr(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Whether bytes (stdout or stderr) are buffered here that no read took
    /// yet.
    fn queued(&self) -> bool;
    /// Whether the script's output ended.
    fn eof(&self) -> bool;
    /// Closes the channel (the script ends with it).
    fn close(&mut self);
}

/// Starts scripts on the server.
pub trait Opener {
    /// Starts `script` on a new channel; returns it with the number of the
    /// connection it is on.
    fn open(&mut self, script: &Script) -> Result<(Box<dyn Channel>, usize), rill_ssh::Error>;
}

impl Channel for ssh2::Channel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Read::read(self, buf)
    }

    fn read_stderr(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stderr().read(buf)
    }

    fn queued(&self) -> bool {
        self.read_window().available > 0
    }

    fn eof(&self) -> bool {
        ssh2::Channel::eof(self)
    }

    fn close(&mut self) {
        let _ = ssh2::Channel::close(self);
    }
}

impl Opener for rill_ssh::Pool {
    fn open(&mut self, script: &Script) -> Result<(Box<dyn Channel>, usize), rill_ssh::Error> {
        let (ch, conn) = self.exec_with_input(&script.command_line(), &script.stdin())?;
        Ok((Box::new(ch), conn))
    }
}
