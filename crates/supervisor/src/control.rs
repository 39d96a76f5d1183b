//! The control socket: what `rill status` asks.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use rill_bus::Subscriber;
use rill_config::Config;
use rill_process::Supervised;

use crate::health::ApiProbe;
use rill_proto::{
    ApiStatus, ChildReport, ControlReply, ControlRequest, HostReport, Ping, StatusReport,
    SubscriberStatus,
};
use tracing::warn;

/// A tap that has not reported for this long is considered not connected.
const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// A subscriber that has not reported for this long is no longer listed.
const SUBSCRIBER_GONE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// What the supervisor has heard on the bus and from stream clients.
#[derive(Default)]
pub struct State {
    pings: BTreeMap<String, Ping>,
    subscribers: BTreeMap<String, SubscriberStatus>,
    /// What the stream endpoint's gate refused, when it has one.
    pub streams_refusals: Option<rill_bus::gate::Refusals>,
    /// Each upstream's status.
    pub upstreams: Vec<rill_bus::upstream::SharedStatus>,
    /// The federation endpoint's downstreams, when it is open.
    pub downstreams: Option<rill_bus::federation::SharedDownstreams>,
    /// The cluster as this member sees it, when it is one.
    pub cluster: Option<std::sync::Arc<std::sync::Mutex<rill_cluster::node::View>>>,
}

impl State {
    pub fn drain_pings(&mut self, pings: &Subscriber) -> anyhow::Result<()> {
        while let Some(msg) = pings.recv(Duration::ZERO)? {
            if let Some(p) = msg
                .frames
                .first()
                .and_then(|f| serde_json::from_slice::<Ping>(f).ok())
            {
                self.pings.insert(p.host.clone(), p);
            }
        }
        Ok(())
    }
}

/// The report `rill status` prints, from the taps' status files, the last
/// pings and the children's state.
pub fn build_report(
    cfg: &Config,
    pings: &BTreeMap<String, Ping>,
    subscribers: &BTreeMap<String, SubscriberStatus>,
    children: &[&Supervised],
    search_api: Option<ApiStatus>,
) -> StatusReport {
    let now = Utc::now();
    let subscribers = subscribers
        .values()
        .filter(|s| now - s.reported_at < SUBSCRIBER_GONE_AFTER)
        .cloned()
        .collect();
    let hosts = cfg
        .hosts
        .keys()
        .map(|host| {
            let status = rill_tap::status::read_status(cfg, host);
            let fresh = status.as_ref().is_some_and(|s| now - s.at < STALE_AFTER);
            HostReport {
                host: host.clone(),
                connected: fresh && status.as_ref().is_some_and(|s| s.connected),
                error: status.as_ref().and_then(|s| s.error.clone()),
                ping: pings.get(host).cloned(),
                reported_at: status.as_ref().map(|s| s.at),
                sessions: status
                    .as_ref()
                    .filter(|_| fresh)
                    .and_then(|s| s.sessions.clone()),
                unconfirmed_lines: status.as_ref().map_or(0, |s| s.unconfirmed_lines),
                logs: status.map(|s| s.logs).unwrap_or_default(),
                owner: None,
            }
        })
        .collect();
    let children = children
        .iter()
        .map(|c| ChildReport {
            name: c.name.clone(),
            pid: c.pid(),
            restarts: c.restarts,
            last_exit: c.last_exit.clone(),
        })
        .collect();
    StatusReport {
        at: now,
        hosts,
        children,
        subscribers,
        search_api,
        streams_guard: None,
        upstreams: Vec::new(),
        downstreams: Vec::new(),
        cluster: None,
    }
}

/// Answers the requests waiting on `control`, without waiting for more. REQ
/// clients send `[identity, "", json]`; DEALER clients may omit the empty
/// frame.
/// `probe` is asked for the search API's health only when a status is.
pub fn serve(
    control: &zmq::Socket,
    cfg: &Config,
    state: &mut State,
    children: &[&Supervised],
    probe: Option<&ApiProbe>,
) -> anyhow::Result<()> {
    while let Ok(mut frames) = control.recv_multipart(zmq::DONTWAIT) {
        if frames.len() < 2 {
            continue;
        }
        let body = frames.pop().unwrap_or_default();
        let reply = match serde_json::from_slice::<ControlRequest>(&body) {
            Ok(ControlRequest::Status) => ControlReply::Ok {
                report: Some(Box::new({
                    let mut r = build_report(
                        cfg,
                        &state.pings,
                        &state.subscribers,
                        children,
                        probe.and_then(ApiProbe::status),
                    );
                    r.streams_guard = state
                        .streams_refusals
                        .as_ref()
                        .map(crate::federate::guard_status);
                    r.upstreams = state
                        .upstreams
                        .iter()
                        .map(|s| s.lock().expect("not poisoned").clone())
                        .collect();
                    if let Some(d) = &state.downstreams {
                        r.downstreams = d.lock().expect("not poisoned").clone();
                    }
                    if let Some(c) = &state.cluster {
                        let v = c.lock().expect("not poisoned").clone();
                        for h in &mut r.hosts {
                            h.owner = v.owners.get(&h.host).cloned();
                        }
                        r.cluster = Some(rill_proto::ClusterStatus {
                            cluster: v.cluster,
                            member: v.member,
                            members: v.members,
                            owners: v.owners,
                            trouble: v.trouble,
                        });
                    }
                    r
                })),
            },
            Ok(ControlRequest::SubscriberReport(report)) => {
                let now = Utc::now();
                state
                    .subscribers
                    .retain(|_, s| now - s.reported_at < SUBSCRIBER_GONE_AFTER);
                state.subscribers.insert(
                    report.id.clone(),
                    SubscriberStatus {
                        report,
                        reported_at: now,
                    },
                );
                ControlReply::Ok { report: None }
            }
            Err(e) => {
                warn!(error = %e, "bad control request");
                ControlReply::Failed {
                    failure_reason: format!("bad request: {e}"),
                }
            }
        };
        frames.push(serde_json::to_vec(&reply)?);
        let _ = control.send_multipart(frames, zmq::DONTWAIT);
    }
    Ok(())
}
