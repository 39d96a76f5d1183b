//! The hub's two sides in the supervisor: the stream endpoint's guard
//! (who may subscribe: `streams.allow`, PLAIN users or CURVE keys) and
//! one thread per upstream collector rebroadcasting what it sends (see
//! `rill_bus::upstream` for what is passed on).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use rill_bus::gate::{Gate, Policy, Refusals};
use rill_bus::upstream::{Feed, SharedStatus};
use rill_bus::{socket, CurveServer, Role};
use rill_config::{is_local_endpoint, Config, Credentials};
use rill_proto::{GuardStatus, UpstreamStatus};
use tracing::warn;

/// The stream endpoint's gate, when its config asks for one. Installed in
/// `ctx` before the proxy binds.
pub fn streams_gate(cfg: &Config, ctx: &zmq::Context) -> anyhow::Result<Option<Gate>> {
    let g = &cfg.streams_guard;
    if g.is_open() {
        return Ok(None);
    }
    let credentials = g
        .credentials_file
        .as_deref()
        .map(Credentials::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("streams.credentials_file: {e}"))?;
    let curve = g
        .curve
        .as_ref()
        .map(|c| CurveServer::load(&c.secret_key_file, &c.authorized_keys_dir))
        .transpose()
        .context("streams.curve")?;
    let tcp = cfg.streams_endpoint.starts_with("tcp://");
    let policy = Policy::new("streams", g.allow.clone(), credentials, curve, tcp)?;
    if tcp && is_local_endpoint(&cfg.streams_endpoint) && policy.is_open() {
        return Ok(None);
    }
    Ok(Some(Gate::install(ctx, policy)?))
}

/// What `rill status` shows of a gate.
pub fn guard_status(refusals: &Refusals) -> GuardStatus {
    let (refused, last_refusal) = refusals.get();
    GuardStatus {
        refused,
        last_refusal,
    }
}

/// The threads rebroadcasting the upstreams; stopped when dropped.
pub struct Upstreams {
    statuses: Vec<SharedStatus>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstreams {
    /// One thread per upstream: its lines onto this collector's bus. An
    /// upstream whose keys cannot be read is reported in its status and
    /// not subscribed to (the others run).
    pub fn start(cfg: &Config, ctx: &zmq::Context) -> anyhow::Result<Upstreams> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut out = Upstreams {
            statuses: Vec::new(),
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        let seen = rill_bus::upstream::shared_seen();
        for u in cfg.upstreams.values() {
            let mut feed = match Feed::connect(ctx, u, &cfg.collector, Arc::clone(&seen)) {
                Ok(f) => f,
                Err(e) => {
                    warn!(upstream = %u.name, error = %e, "cannot subscribe to the upstream");
                    out.statuses
                        .push(Arc::new(std::sync::Mutex::new(UpstreamStatus {
                            name: u.name.clone(),
                            endpoint: u.endpoint.clone(),
                            last_error: Some(e.to_string()),
                            ..UpstreamStatus::default()
                        })));
                    continue;
                }
            };
            out.statuses.push(feed.status());
            let bus = socket::open(ctx, zmq::PUB, Role::LiveBus)?;
            socket::connect(&bus, &cfg.bus_endpoint())?;
            let stop = Arc::clone(&stop);
            let name = u.name.clone();
            out.threads.push(
                std::thread::Builder::new()
                    .name(format!("upstream-{name}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match feed.next(Duration::from_millis(100)) {
                                Ok(Some(frames)) => {
                                    let _ = bus.send_multipart(frames, zmq::DONTWAIT);
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    warn!(upstream = %name, error = %e, "upstream subscriber failed");
                                    std::thread::sleep(Duration::from_secs(1));
                                }
                            }
                        }
                    })
                    .context("could not start an upstream thread")?,
            );
        }
        Ok(out)
    }

    /// Handles on each upstream's status.
    pub fn handles(&self) -> Vec<SharedStatus> {
        self.statuses.clone()
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
