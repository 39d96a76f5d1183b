//! The hub's two sides in the supervisor: the stream endpoint's guard
//! (who may subscribe: `streams.allow`, PLAIN users or CURVE keys) and
//! one thread per upstream collector rebroadcasting what it sends (see
//! `rill_bus::upstream` for what is passed on).

use std::sync::atomic::AtomicBool;

use anyhow::Context;
use rill_bus::gate::{Gate, Policy, Refusals};
use rill_bus::upstream::Feeds;
use rill_bus::{socket, CurveServer, Role};
use rill_config::{is_local_endpoint, Config, Credentials};
use rill_proto::GuardStatus;

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
    let tcp = cfg.streams_endpoint.starts_with("tcp://")
        || cfg
            .federation_endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("tcp://"));
    let policy = Policy::new("streams", g.allow.clone(), credentials, curve, tcp)?;
    let local = is_local_endpoint(&cfg.streams_endpoint)
        && cfg
            .federation_endpoint
            .as_deref()
            .is_none_or(is_local_endpoint);
    if tcp && local && policy.is_open() {
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

/// Threads rebroadcasting each upstream's messages onto this collector's
/// bus (the feed has added this collector to their `via`; stopped when
/// dropped). An upstream whose keys cannot be read is
/// reported in its status and not subscribed to (the others run).
pub fn rebroadcast(cfg: &Config, ctx: &zmq::Context) -> anyhow::Result<Feeds> {
    let feeds = Feeds::start(
        ctx,
        cfg.upstreams.values(),
        &cfg.collector,
        ("upstream", BATCH),
        |_| {
            let bus = socket::open(ctx, zmq::PUB, Role::LiveBus)?;
            socket::connect(&bus, &cfg.bus_endpoint())?;
            Ok(move |messages: Vec<Vec<Vec<u8>>>, _: &AtomicBool| {
                for frames in messages {
                    let _ = bus.send_multipart(frames, zmq::DONTWAIT);
                }
                true
            })
        },
    )?;
    Ok(feeds)
}

/// Messages a rebroadcasting thread takes from its feed at once.
const BATCH: usize = 256;
