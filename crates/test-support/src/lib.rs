//! Helpers shared by every end-to-end test.
//!
//! - [`wait_until`] / [`wait_for`]: poll a condition with a deadline instead
//!   of sleeping a fixed time.
//! - [`free_port`]: a loopback port no other test in this process got.
//! - [`Sshd`]: a real OpenSSH `sshd` on 127.0.0.1 with a generated config and
//!   host key in a temp dir (never the system's config).
//! - [`TestUser`]: an unprivileged account the tests log in as (one of
//!   [`ACCOUNTS`], created by `tests/install-deps.sh`; `rilltest` unless a
//!   test needs another login shell): its password, authorized keys, a
//!   scratch dir for "remote" log files, and its processes (what Rill left
//!   running on the server side).
//! - [`TestEtcd`]: a real etcd cluster of one or more nodes on loopback.
//! - [`which`]: a program the test command installs; [`raise_open_files`]:
//!   room for floods of connections.

mod etcd;
mod pki;
mod sshd;
mod user;

pub use etcd::TestEtcd;
pub use pki::TestPki;
pub use sshd::{Sshd, SshdOptions};
pub use user::{RemoteDir, RemoteProcess, TestKey, TestUser, ACCOUNTS};

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it is true or `deadline` has passed.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_for(deadline, || cond().then_some(())).is_some()
}

/// Polls `f` every 20 ms until it returns `Some` or `deadline` has passed.
pub fn wait_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1, never the same twice in one process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// The first `name` on this machine's PATH; panics naming the install
/// script when it is missing (the test command installs every tool the
/// tests use, so a missing one is a failure, never a skip).
pub fn which(name: &str) -> std::path::PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed; run tests/install-deps.sh"))
}

/// What `shellcheck` (POSIX sh, every severity) says about the script
/// `text` named `name`; `None` when it finds nothing.
pub fn shellcheck(name: &str, text: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(which("shellcheck"))
        .args(["--shell=sh", "--severity=style"])
        .arg(&file)
        .output()
        .unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Raises this process's open-file limit to `n` (the hard limit too: tests
/// run as root), for tests that hold thousands of connections.
pub fn raise_open_files(n: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_max = l.rlim_max.max(n);
        l.rlim_cur = n;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_returns_the_value_once_ready() {
        let mut n = 0;
        assert_eq!(
            wait_for(Duration::from_secs(1), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert!(!wait_until(Duration::from_millis(50), || false));
    }

    #[test]
    fn free_ports_are_not_repeated() {
        let a: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(a.len(), 50);
    }
}
