//! The supervisor: the one process an operator starts.
//!
//! - runs the stream proxy (publishers -> `run/bus.sock` -> `streams.endpoint`);
//! - starts `masspinger`, `parser` and one `robust_ssh_tap` per host (per
//!   `tap.hosts_per_process` hosts), and
//!   restarts any that exits (250 ms doubling to 10 s); in a cluster
//!   (`cluster:`), one `robust_ssh_tap` per host this member owns, started
//!   and stopped as the cluster hands hosts over (`rill_cluster::node`);
//! - answers `rill status` on its control socket (`run/control.sock`, ROUTER,
//!   JSON [`ControlRequest`]/[`ControlReply`]);
//! - on SIGTERM/SIGINT stops the taps first (so remote follow scripts end with
//!   their channels), then the parser (which commits) and masspinger, killing
//!   whatever has not exited after a grace period. The whole tree is gone
//!   within [`STOP_GRACE`] plus a little.

mod control;
mod federate;
mod health;

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rill_bus::{socket, Role, StreamProxy, Subscriber};
use rill_config::Config;
use rill_process::{sibling, sleep_until, stop_all, ChildExits, Shutdown, Supervised};
use tracing::info;

pub use control::build_report;

/// How long children get to stop after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(4);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    for dir in [cfg.run_dir(), cfg.index_dir(), cfg.checkpoints_dir()] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    // A state dir made by an older rill (0755) is closed too: it holds every
    // indexed line.
    for dir in [
        cfg.state_dir.clone(),
        cfg.run_dir(),
        cfg.index_dir(),
        cfg.checkpoints_dir(),
    ] {
        if let Err(e) =
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not make the folder private (0700); other users may read it");
        }
    }
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let _lock = lock_state_dir(cfg)?;
    let exits = ChildExits::watch()?;
    let ctx = zmq::Context::new();
    // The guard is installed before the proxy binds.
    let gate = federate::streams_gate(cfg, &ctx)?;
    let proxy = StreamProxy::start_on(
        &ctx,
        &cfg.bus_endpoint(),
        &[&cfg.streams_endpoint, &cfg.local_streams_endpoint()],
        gate.as_ref(),
    )?;
    let control = socket::open(&ctx, zmq::ROUTER, Role::Control)?;
    socket::bind(&control, &cfg.control_endpoint())?;
    let pings = Subscriber::connect(&ctx, rill_bus::proxy::INPROC_STREAMS, &["ping/#"])?;
    let federation = cfg
        .federation_endpoint
        .as_deref()
        .map(|e| rill_bus::federation::Federation::start(&ctx, e, gate.as_ref(), &cfg.collector))
        .transpose()?;
    let upstreams = federate::rebroadcast(cfg, &ctx)?;
    // A member of a cluster follows only the hosts it owns.
    let cluster = cfg
        .cluster
        .as_ref()
        .map(|c| {
            rill_cluster::node::Node::join(
                c,
                cfg.hosts.keys().cloned().collect(),
                cfg.checkpoints_dir(),
                rill_cluster::tenure::path(&cfg.state_dir),
            )
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("{}: cluster: {e}", cfg.file.display()))?;
    info!(config = %cfg.file.display(), streams = %cfg.streams_endpoint, hosts = cfg.hosts.len(), logs = cfg.logs.len(), "supervisor started");

    let child = |name: &str, bin: &'static str, extra: Vec<String>| {
        let file = cfg.file.clone();
        Supervised::new(name, MAX_BACKOFF, move || {
            let mut c = Command::new(sibling(bin));
            c.arg("--config").arg(&file).args(&extra);
            c
        })
    };
    let tap_for = |hosts: &[String]| {
        child(
            &format!("robust_ssh_tap {}", hosts.join(" ")),
            "robust_ssh_tap",
            rill_tap::robust::host_args(hosts),
        )
    };
    let mut taps: Vec<Supervised> = if cluster.is_some() {
        Vec::new()
    } else {
        cfg.tap_groups().iter().map(|h| tap_for(h)).collect()
    };
    // The cluster's hosts this member follows, by host.
    let mut owned: std::collections::BTreeMap<String, Supervised> = Default::default();
    let mut parser = child("parser", "parser", vec![]);
    let mut pinger = child("masspinger", "masspinger", vec![]);

    let mut state = control::State::default();
    state.streams_refusals = gate.as_ref().map(rill_bus::Gate::refusal_log);
    state.upstreams = upstreams.statuses();
    state.downstreams = federation.as_ref().map(|f| f.statuses());
    state.cluster = cluster.as_ref().map(|n| n.view_handle());
    let probe = cfg.search.listen.map(health::ApiProbe::start);
    let mut failure = None;
    while !shutdown.requested() {
        if let Some(node) = &cluster {
            loop {
                let change = match node.changes() {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        // Nothing says which hosts are ours any more.
                        tracing::error!(error = %e, "stopping: the cluster thread ended");
                        failure = Some(e);
                        break;
                    }
                };
                // Stopped before the member lets go of them in etcd, in
                // the time its lease leaves (what has not stopped by then
                // is killed).
                let mut stopping: Vec<Supervised> =
                    change.stop.iter().filter_map(|h| owned.remove(h)).collect();
                stop_all(
                    &mut stopping.iter_mut().collect::<Vec<_>>(),
                    rill_cluster::member::STOP_TIME,
                );
                if !change.stop.is_empty() {
                    info!(hosts = ?change.stop, "stopped following hosts another member owns now");
                    node.stopped(change.stop);
                }
                for h in change.start {
                    info!(host = %h, "following a host this member owns now");
                    owned.insert(h.clone(), tap_for(std::slice::from_ref(&h)));
                }
            }
        }
        if failure.is_some() {
            break;
        }
        // Only a child that exited or is due to start needs a look.
        let exited = exits.take();
        let now = Instant::now();
        for c in std::iter::once(&mut parser)
            .chain(std::iter::once(&mut pinger))
            .chain(taps.iter_mut())
            .chain(owned.values_mut())
        {
            if exited || c.next_due().is_some_and(|t| t <= now) {
                c.tick(true);
            }
        }
        state.drain_pings(&pings)?;
        if let Some(p) = &probe {
            keep_api_answering(p, &mut parser);
        }
        let children: Vec<&Supervised> = std::iter::once(&parser)
            .chain(std::iter::once(&pinger))
            .chain(taps.iter())
            .chain(owned.values())
            .collect();
        control::serve(&control, cfg, &mut state, &children, probe.as_ref())?;
        // Until a request, a ping, a child's exit, shutdown or a due restart.
        let due = children.iter().filter_map(|c| c.next_due()).min();
        // The cluster's thread hands hosts over at any time.
        let fds: Vec<_> = [exits.fd(), shutdown.wake_fd()]
            .into_iter()
            .chain(cluster.as_ref().map(|n| n.wake_fd()))
            .collect();
        socket::wait(&[&control, pings.socket()], &fds, sleep_until(due))?;
    }

    info!("supervisor stopping");
    let mut tap_refs: Vec<&mut Supervised> = taps.iter_mut().chain(owned.values_mut()).collect();
    stop_all(&mut tap_refs, STOP_GRACE - Duration::from_secs(1));
    // Every host stopped: leave the cluster (the lease and our keys go).
    drop(cluster);
    if let Some(e) = failure {
        bail!("cluster: {e}");
    }
    stop_all(&mut [&mut parser, &mut pinger], Duration::from_secs(1));
    drop(upstreams);
    drop(federation);
    proxy.stop();
    drop(gate);
    info!("supervisor stopped");
    Ok(())
}

/// Restarts the parser once its search API has not answered for
/// [`health::RESTART_AFTER`] (and the parser ran that long).
fn keep_api_answering(probe: &health::ApiProbe, parser: &mut Supervised) {
    let Some(failing) = probe.failing_for() else {
        return;
    };
    let ran = parser.running_for().unwrap_or_default();
    if failing >= health::RESTART_AFTER && ran >= health::RESTART_AFTER {
        if let Some(s) = probe.status() {
            health::log_failure(&s);
        }
        parser.restart(
            &format!(
                "its search api on {} did not answer /health for {}s",
                probe.listen(),
                health::RESTART_AFTER.as_secs()
            ),
            STOP_GRACE,
        );
        probe.reset();
    }
}

/// One supervisor per state_dir: two would fight over sockets and the index.
fn lock_state_dir(cfg: &Config) -> anyhow::Result<File> {
    let path = cfg.run_dir().join("supervisor.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("could not open {}", path.display()))?;
    // SAFETY: flock on an open file; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(cfg.run_dir().join("supervisor.pid")).unwrap_or_default();
        bail!(
            "another supervisor (pid {}) is running for {}",
            pid.trim(),
            cfg.state_dir.display()
        );
    }
    std::fs::write(
        cfg.run_dir().join("supervisor.pid"),
        std::process::id().to_string(),
    )?;
    Ok(file)
}
