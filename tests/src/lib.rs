//! The Rill side of the end-to-end harness: write a config, start the real
//! `supervisor`, run the real `rill` CLI. Generic helpers (sshd, the test
//! user, waiting with a deadline) come from `rill-test-support`.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/<profile>/`); the test command builds them first.
//!
//! One idea a module, every item re-exported here:
//!
//! - `config`: the hosts and logs of a test config (`TestHost`, `TestLog`,
//!   `TestAuth`) and edits to a written config;
//! - `rill`: `Rill`, one installation in a temp dir: its supervisor and the
//!   `rill` CLI;
//! - `queries`: what a test asks a running Rill: search counts, status,
//!   whether a host's logs are followed;
//! - `tail`: a running `rill tail --json`;
//! - `hosts`: the hosts a test runs against: the `OneHost` fixture and
//!   BusyBox-only sshd options;
//! - `http`: plain HTTP/1.0 requests to the search API and the ingest
//!   endpoint;
//! - `keys`: CURVE key pairs from the real `rill keygen`;
//! - `processes`: process tables (the test user's, this machine's) and
//!   memory;
//! - `black_hole`: a TCP port on loopback cut off by iptables;
//! - `numbered_lines` and `fault_run`: the machinery of the long fault run
//!   (`tests/faults.rs`): writers of numbered lines, heals and their report;
//! - `session`: a client of the session-control protocol.

use std::path::{Path, PathBuf};
use std::process::Command;

mod black_hole;
mod config;
pub mod fault_run;
mod hosts;
mod http;
mod keys;
pub mod numbered_lines;
mod processes;
mod queries;
mod rill;
pub mod session;
mod tail;
pub mod webdriver;

pub use black_hole::{only_from, BlackHole, IptablesRule};
pub use config::{TestAuth, TestHost, TestLog};
pub use hosts::{BusyBoxHost, ManyHosts, OneHost};
pub use http::{http_get, http_post, http_request, url_encode};
pub use keys::keygen;
pub use processes::{
    local_processes_mentioning, remote_processes_in, remote_sessions, rss_kib, RssWatch,
};
pub use rill::Rill;
pub use tail::{Live, Tail};

pub use rill_test_support::{
    free_port, raise_open_files, wait_for, wait_until, which, RemoteDir, RemoteProcess, Sshd,
    SshdOptions, TestEtcd, TestKey, TestPki, TestUser,
};

/// `target/<profile>/<name>`: where cargo put the binary. Test executables
/// live one level below (`target/<profile>/deps/`), benchmark binaries right
/// beside the others.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let here = exe.parent().unwrap();
    let profile_dir = if here.join(name).exists() {
        here
    } else {
        here.parent().unwrap()
    };
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// `logrotate -f -s STATE CONF`: rotates now, whatever the conditions in
/// CONF say; panics with logrotate's stderr if it fails.
pub fn logrotate_now(state: &Path, conf: &Path) {
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(state)
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
