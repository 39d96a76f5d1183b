//! A descriptor that tells a daemon loop one of its children exited.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// A descriptor that becomes readable when a child of this process exits.
/// [`ChildExits::take`] it before looking at the children (e.g. with
/// [`Supervised::tick`](crate::Supervised::tick)); an exit after that makes it
/// readable again.
#[derive(Debug)]
pub struct ChildExits {
    rx: UnixStream,
}

impl ChildExits {
    /// Installs a SIGCHLD handler that writes to the descriptor.
    pub fn watch() -> std::io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGCHLD, tx)?;
        Ok(ChildExits { rx })
    }

    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Whether a child exited since the last call (drains the descriptor).
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;
    use crate::poll::readable_within;

    #[test]
    fn a_child_exit_makes_the_descriptor_readable() {
        // (Other tests of this binary spawn children too, so this only
        // checks that an exit is seen, not that nothing else is.)
        let exits = ChildExits::watch().unwrap();
        exits.take();
        let mut child = Command::new("true").spawn().unwrap();
        assert!(readable_within(exits.fd(), Duration::from_secs(10)));
        assert!(exits.take());
        child.wait().unwrap();
    }
}
