//! The shutdown signal every daemon loop checks and can sleep on.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::poll::poll_readable;

/// Raised once SIGTERM or SIGINT arrived.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<ShutdownInner>);

#[derive(Debug)]
struct ShutdownInner {
    flag: Arc<AtomicBool>,
    /// Readable once shutdown was requested (a byte is written to `wake_tx`
    /// by the signal handler or by [`Shutdown::trigger`]).
    wake_rx: UnixStream,
    wake_tx: UnixStream,
}

impl Shutdown {
    /// Installs SIGTERM and SIGINT handlers that raise the flag.
    pub fn on_signals() -> std::io::Result<Self> {
        let s = Self::new()?;
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&s.0.flag))?;
            signal_hook::low_level::pipe::register(sig, s.0.wake_tx.try_clone()?)?;
        }
        Ok(s)
    }

    /// A flag that only [`Shutdown::trigger`] raises (for tests and in-process use).
    pub fn manual() -> Self {
        Self::new().expect("a socket pair for the shutdown flag")
    }

    fn new() -> std::io::Result<Self> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        Ok(Shutdown(Arc::new(ShutdownInner {
            flag: Arc::new(AtomicBool::new(false)),
            wake_rx,
            wake_tx,
        })))
    }

    pub fn requested(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed)
    }

    pub fn trigger(&self) {
        self.0.flag.store(true, Ordering::Relaxed);
        let _ = (&self.0.wake_tx).write(&[1]);
    }

    /// A descriptor that is readable once shutdown was requested: poll it
    /// beside whatever the loop waits for.
    pub fn wake_fd(&self) -> RawFd {
        self.0.wake_rx.as_raw_fd()
    }

    /// Sleeps up to `d`, waking early when shutdown is requested. Returns
    /// whether shutdown was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.requested() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            poll_readable(&[self.wake_fd()], left);
        }
        self.requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::readable_within;

    #[test]
    fn a_triggered_shutdown_wakes_a_sleeper_and_its_descriptor() {
        let s = Shutdown::manual();
        assert!(!readable_within(s.wake_fd(), Duration::from_millis(100)));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = s.clone();
        std::thread::spawn(move || tx.send(sleeper.sleep(Duration::from_secs(600))));
        s.trigger();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        assert!(readable_within(s.wake_fd(), Duration::from_secs(10)));
    }
}
