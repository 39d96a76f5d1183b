//! Waiting for descriptors to become readable, and how long a daemon loop
//! may sleep before it looks again.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Waits up to `timeout` (rounded up to whole milliseconds, so a short
/// wait never becomes a busy 0) for one of `fds` to be readable, or a
/// signal.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as u64;
    readable(fds, Duration::from_millis(ms));
}

/// Waits until `fd` is readable, at most `timeout` (to the microsecond);
/// whether it is.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    readable(&[fd], timeout)
}

/// Waits up to `timeout` for one of `fds` to be readable, or a signal;
/// whether one is.
fn readable(fds: &[RawFd], timeout: Duration) -> bool {
    let mut items: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: ppoll(2) on an array we own, of the length we pass; no
    // signal mask.
    let n = unsafe {
        libc::ppoll(
            items.as_mut_ptr(),
            items.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    n > 0 && items.iter().any(|i| i.revents & libc::POLLIN != 0)
}

/// The longest a daemon loop that sleeps until its next event sleeps at
/// once, should an event be missed.
pub const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// How long a loop may sleep when its next timer is `due` (none: only
/// events wake it): until then, at most [`LOOK_AT_LEAST_EVERY`].
pub fn sleep_until(due: Option<Instant>) -> Duration {
    due.map_or(LOOK_AT_LEAST_EVERY, |t| {
        t.saturating_duration_since(Instant::now())
            .min(LOOK_AT_LEAST_EVERY)
    })
}

/// Whether `fd` becomes readable within `within`, polling again when a
/// signal cuts a wait short (the tests of signal descriptors use it).
#[cfg(test)]
pub(crate) fn readable_within(fd: RawFd, within: Duration) -> bool {
    let mut item = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let end = Instant::now() + within;
    while Instant::now() < end {
        // SAFETY: poll(2) on one pollfd we own.
        if unsafe { libc::poll(&mut item, 1, 50) } > 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_readable_says_whether_bytes_came_within_the_time() {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!wait_readable(b.as_raw_fd(), Duration::from_micros(300)));
        a.write_all(b"x").unwrap();
        assert!(wait_readable(b.as_raw_fd(), Duration::from_secs(5)));
    }
}
