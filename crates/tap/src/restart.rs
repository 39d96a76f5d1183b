//! The restart policy `robust_ssh_tap` (a process per host or group) and
//! [`crate::group`] (a thread per host) share: backoff between starts, held
//! while masspinger says the host is down, at once when it comes back up.

use std::time::{Duration, Instant};

use rill_bus::Message;
use rill_config::Config;
use rill_proto::Ping;

/// How long a ping verdict counts before we assume the host is up again.
const PING_FRESH_FOR: Duration = Duration::from_secs(30);
/// The longest wait between two starts of a tap (a process, or a grouped
/// host's thread).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Until when a host counts as down by its last ping verdict and when it
/// came: a fresh "down" holds its restart; "up", stale or none do not.
pub fn down_until(verdict: Option<(bool, Instant)>) -> Option<Instant> {
    match verdict {
        Some((false, at)) if at.elapsed() < PING_FRESH_FOR => Some(at + PING_FRESH_FOR),
        _ => None,
    }
}

/// The verdict a `ping/<host>` message carries.
pub fn ping_of(msg: &Message) -> Option<Ping> {
    msg.frames
        .first()
        .and_then(|f| serde_json::from_slice::<Ping>(f).ok())
}

/// Each of `hosts` must be in the config.
pub fn check_hosts(cfg: &Config, hosts: &[String]) -> anyhow::Result<()> {
    for host in hosts {
        anyhow::ensure!(
            cfg.hosts.contains_key(host),
            "host {host:?} is not in {}",
            cfg.file.display()
        );
    }
    Ok(())
}
