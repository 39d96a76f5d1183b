//! `robust_ssh_tap`: keeps one `ssh_tap` for a host (or for a group of hosts,
//! `tap.hosts_per_process`) alive.
//!
//! Restarts it with exponential backoff (250 ms doubling to 30 s), holds the
//! restart while masspinger says the host (every host of the group) is down
//! (assuming up when masspinger is silent), restarts it at once when a host
//! comes back up,
//! and stops it with SIGTERM (SIGKILL after 3 s) when asked to stop.
//!
//! Between events it sleeps: a ping, the tap's exit (SIGCHLD), shutdown, or
//! the moment a restart or a down verdict is due wake it; nothing else can
//! change what it does, so it never wakes on a tick.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rill_bus::socket;
use rill_bus::{ClientAuth, Subscriber};
use rill_config::Config;
use rill_process::{sibling, sleep_until, stop_all, ChildExits, Shutdown, Supervised};
use tracing::info;

use crate::restart::{check_hosts, down_until, ping_of, MAX_BACKOFF};

pub fn run(cfg: &Config, hosts: &[String], shutdown: &Shutdown) -> anyhow::Result<()> {
    check_hosts(cfg, hosts)?;
    let exits = ChildExits::watch()?;
    let ctx = zmq::Context::new();
    let topics: Vec<String> = hosts.iter().map(|h| format!("ping/{h}")).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let pings = Subscriber::connect_with(
        &ctx,
        &cfg.local_streams_endpoint(),
        &topics,
        &ClientAuth::for_own_streams(cfg).map_err(|e| anyhow::anyhow!(e))?,
    )?;
    let config_file = cfg.file.clone();
    let host_args = host_args(hosts);
    let mut tap = Supervised::new(
        format!("ssh_tap {}", hosts.join(" ")),
        MAX_BACKOFF,
        move || {
            let mut c = Command::new(sibling("ssh_tap"));
            c.arg("--config").arg(&config_file).args(&host_args);
            c
        },
    );
    // The last verdict on each host, and when it came.
    let mut verdicts: HashMap<String, (bool, Instant)> = HashMap::new();
    while !shutdown.requested() {
        exits.take();
        while let Some(msg) = pings.recv(Duration::ZERO)? {
            let Some(ping) = ping_of(&msg).filter(|p| hosts.contains(&p.host)) else {
                continue;
            };
            let host = ping.host.clone();
            if verdicts.get(&host).is_none_or(|&(up, _)| up != ping.up) {
                info!(host, up = ping.up, "host reachability changed");
                if ping.up {
                    // Back up: try at once, not after the backoff the
                    // failed attempts while it was down built up.
                    tap.restart_soon();
                }
            }
            verdicts.insert(host, (ping.up, Instant::now()));
        }
        let down_until = all_down_until(hosts, &verdicts);
        tap.tick(down_until.is_none());
        // While every host is down a due start waits for the verdicts to end.
        let due = match down_until {
            Some(t) => Some(t),
            None => tap.next_start(),
        };
        socket::wait(
            &[pings.socket()],
            &[exits.fd(), shutdown.wake_fd()],
            sleep_until(due),
        )?;
    }
    stop_all(&mut [&mut tap], Duration::from_secs(3));
    Ok(())
}

/// Until when every host of the group counts as down (a fresh down verdict
/// for each; silence counts as up), if they all do.
fn all_down_until(
    hosts: &[String],
    verdicts: &HashMap<String, (bool, Instant)>,
) -> Option<Instant> {
    hosts
        .iter()
        .map(|h| down_until(verdicts.get(h).copied()))
        .min()
        .flatten()
}

/// The command-line arguments naming `hosts` to `ssh_tap` or
/// `robust_ssh_tap`: `--host` before each.
pub fn host_args(hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .flat_map(|h| ["--host".to_owned(), h.clone()])
        .collect()
}
