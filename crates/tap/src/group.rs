//! Several hosts in one `ssh_tap` process (`tap.hosts_per_process`).
//!
//! Each host runs the same loop as a tap of its own ([`crate::run::run`]),
//! on a thread of its own, with its own SSH connection, sockets, status and
//! checkpoints. A host's tap that ends (connection lost, server down, host
//! key changed) or panics is restarted on its thread the way
//! `robust_ssh_tap` restarts a process: 250 ms doubling to 30 s, held while
//! masspinger says the host is down, at once when it comes back up. The
//! other hosts of the process go on meanwhile.
//!
//! A process per host costs mostly the code every process maps again; a
//! host on a thread costs its buffers and stacks (docs/BENCHMARKS.md,
//! section 5, has the figures for 200 hosts).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rill_bus::{socket, ClientAuth, Subscriber};
use rill_config::Config;
use rill_process::{Backoff, Shutdown};
use tracing::{error, info, info_span, warn};

use crate::restart::{check_hosts, down_until, ping_of, MAX_BACKOFF};

/// Follows `hosts`: one host as before (the tap ends with its connection
/// and `robust_ssh_tap` restarts the process), several each on a thread
/// that restarts its tap until shutdown.
///
/// Each run of a host's tap gets a shutdown flag of its own, raised when
/// the process is asked to stop: what ends one run (its session server
/// failing raises that run's flag) must not end the other hosts'.
pub fn run(cfg: &Config, hosts: &[String], shutdown: &Shutdown) -> anyhow::Result<()> {
    if let [host] = hosts {
        return crate::run::run(cfg, host, shutdown);
    }
    check_hosts(cfg, hosts)?;
    // A host's connection, sockets and ZeroMQ context take a dozen or two
    // descriptors: 64 hosts pass the usual soft limit of 1,024.
    rill_process::raise_file_limit();
    let ctx = zmq::Context::new();
    let runs: Vec<Mutex<Option<Shutdown>>> = hosts.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        let runs = &runs;
        s.spawn(move || {
            while !shutdown.sleep(Duration::from_secs(3600)) {}
            for r in runs {
                if let Some(run) = &*r.lock().unwrap_or_else(PoisonError::into_inner) {
                    run.trigger();
                }
            }
        });
        for (host, slot) in hosts.iter().zip(runs) {
            let ctx = &ctx;
            let started = std::thread::Builder::new()
                .name(format!("tap {host}"))
                .spawn_scoped(s, move || keep(cfg, host, shutdown, slot, ctx));
            if let Err(e) = started {
                error!(host, error = %e, "could not start the host's thread; it is not followed");
            }
        }
    });
    Ok(())
}

/// Runs `host`'s tap until shutdown, again after each end. `slot` holds the
/// current run's shutdown flag for [`run`] to raise.
fn keep(
    cfg: &Config,
    host: &str,
    shutdown: &Shutdown,
    slot: &Mutex<Option<Shutdown>>,
    ctx: &zmq::Context,
) {
    let _span = info_span!("ssh_tap", host = %host).entered();
    let topic = format!("ping/{host}");
    let mut backoff = Backoff::new(MAX_BACKOFF);
    loop {
        let this_run = Shutdown::manual();
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(this_run.clone());
        // After the flag is in its slot: a stop asked before is seen here,
        // one asked after raises it.
        if shutdown.requested() {
            return;
        }
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| crate::run::run(cfg, host, &this_run))) {
            Ok(Ok(())) => {}
            // The tap has logged and reported why.
            Ok(Err(_)) => {}
            Err(_) => error!("the tap panicked"),
        }
        if shutdown.requested() {
            return;
        }
        // Subscribed afresh for each wait: verdicts queued during a long
        // run would be hours old.
        let auth = ClientAuth::for_own_streams(cfg).unwrap_or_default();
        let pings = Subscriber::connect_with(ctx, &cfg.local_streams_endpoint(), &[&topic], &auth)
            .inspect_err(|e| warn!(error = %e, "no ping verdicts: the restart is not held while the host is down"))
            .ok();
        let due = Instant::now() + backoff.after_run(started.elapsed());
        wait_to_restart(host, shutdown, pings.as_ref(), due, &mut backoff);
    }
}

/// Until `due`, and while masspinger says the host is down; at once when
/// it says the host came back up (the backoff starts over then).
fn wait_to_restart(
    host: &str,
    shutdown: &Shutdown,
    pings: Option<&Subscriber>,
    mut due: Instant,
    backoff: &mut Backoff,
) {
    let mut verdict: Option<(bool, Instant)> = None;
    while !shutdown.requested() {
        while let Some(msg) = pings.and_then(|p| p.recv(Duration::ZERO).ok().flatten()) {
            let Some(ping) = ping_of(&msg).filter(|p| p.host == host) else {
                continue;
            };
            if verdict.is_some_and(|(up, _)| up != ping.up) {
                info!(up = ping.up, "host reachability changed");
                if ping.up {
                    // Back up: at once, not after the backoff the attempts
                    // while it was down built up.
                    *backoff = Backoff::new(MAX_BACKOFF);
                    due = Instant::now();
                }
            }
            verdict = Some((ping.up, Instant::now()));
        }
        let down_until = down_until(verdict);
        let now = Instant::now();
        if down_until.is_none() && now >= due {
            return;
        }
        let until = down_until.unwrap_or(due);
        let sockets: Vec<&zmq::Socket> = pings.iter().map(|p| p.socket()).collect();
        if let Err(e) = socket::wait(&sockets, &[shutdown.wake_fd()], until - now) {
            warn!(error = %e, "waiting to restart");
            shutdown.sleep(until - now);
        }
    }
}
