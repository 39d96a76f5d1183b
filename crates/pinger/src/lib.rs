//! masspinger: probes every configured host and publishes `ping/<host>`.
//!
//! Every [`PROBE_EVERY`] each host gets a TCP connect to its SSH port (the
//! verdict: `up` means Rill can reach sshd there) and, where this process may
//! send ICMP ([`icmp`]), an echo request (its round trip is reported too).
//! ICMP alone does not decide: a host whose firewall drops ICMP is still up
//! for SSH, and one that answers ICMP with sshd down is not. Connects run
//! [`MAX_IN_FLIGHT`] at a time on a small tokio runtime, so thousands of
//! hosts are probed in a few seconds within the process's file limit (raised
//! to its hard limit at start). A result is published when a host changes
//! state and at least every [`REPEAT_EVERY`], so late subscribers learn it.

pub mod icmp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_bus::socket::{self, Role};
use rill_config::Config;
use rill_process::Shutdown;
use rill_proto::{Ping, Topic};
use tracing::{info, warn};

pub const PROBE_EVERY: Duration = Duration::from_secs(2);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
pub const REPEAT_EVERY: Duration = Duration::from_secs(10);
/// TCP probes in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// Probes `address:port` once; the round-trip time if it answered.
pub async fn probe(address: &str, port: u16) -> Option<Duration> {
    let start = Instant::now();
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect((address, port)),
    )
    .await
    {
        Ok(Ok(_)) => Some(start.elapsed()),
        _ => None,
    }
}

/// One host to probe.
struct Target {
    name: String,
    address: String,
    port: u16,
    /// Its IPv4 address, for ICMP (resolved once at start).
    ipv4: Option<Ipv4Addr>,
}

pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    rill_process::raise_file_limit();
    let ctx = zmq::Context::new();
    let live = socket::open(&ctx, zmq::PUB, Role::LiveBus)?;
    socket::connect(&live, &cfg.bus_endpoint())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let targets: Vec<Target> = cfg
        .hosts
        .values()
        // A host behind a jump host is as reachable as the first hop.
        .map(|h| (h, cfg.first_hop(h)))
        .map(|(h, hop)| Target {
            name: h.name.clone(),
            address: hop.address.clone(),
            port: hop.port,
            ipv4: (hop.address.as_str(), hop.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| {
                    a.find_map(|a| match a.ip() {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    })
                }),
        })
        .collect();
    let mut icmp = match icmp::Icmp::open() {
        Ok(i) => {
            info!(kind = ?i.kind(), "ICMP echo available");
            Some(i)
        }
        Err(e) => {
            info!(error = %e, "ICMP not permitted; probing the SSH port only");
            None
        }
    };
    let mut last: HashMap<String, (bool, Instant)> = HashMap::new();
    info!(hosts = targets.len(), "masspinger probing");
    while !shutdown.requested() {
        let round = Instant::now();
        // ICMP to every host at once, on its own thread, while TCP runs.
        let icmp_round = icmp.take().map(|mut i| {
            let addrs: Vec<(usize, Ipv4Addr)> = targets
                .iter()
                .enumerate()
                .filter_map(|(n, t)| t.ipv4.map(|a| (n, a)))
                .collect();
            std::thread::spawn(move || {
                let only: Vec<Ipv4Addr> = addrs.iter().map(|(_, a)| *a).collect();
                let got = i.probe(&only, PROBE_TIMEOUT);
                let by_target: HashMap<usize, Duration> =
                    got.into_iter().map(|(k, d)| (addrs[k].0, d)).collect();
                (i, by_target)
            })
        });
        let tcp = rt.block_on(probe_all(&targets));
        let icmp_rtts = match icmp_round.map(|h| h.join()) {
            Some(Ok((i, rtts))) => {
                icmp = Some(i);
                rtts
            }
            Some(Err(_)) => {
                warn!("the ICMP prober failed; probing the SSH port only");
                HashMap::new()
            }
            None => HashMap::new(),
        };
        for (n, t) in targets.iter().enumerate() {
            let rtt = tcp[n];
            let up = rtt.is_some();
            let changed = last
                .get(&t.name)
                .is_none_or(|(was, at)| *was != up || at.elapsed() >= REPEAT_EVERY);
            if !changed {
                continue;
            }
            if last.get(&t.name).is_some_and(|(was, _)| *was != up) {
                info!(host = %t.name, up, "reachability changed");
            }
            last.insert(t.name.clone(), (up, Instant::now()));
            let ping = Ping {
                host: t.name.clone(),
                up,
                rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
                icmp_rtt_ms: icmp_rtts.get(&n).map(|d| d.as_secs_f64() * 1000.0),
                at: Utc::now(),
            };
            let topic = Topic::Ping { host: &t.name }.to_string();
            let json = serde_json::to_vec(&ping)?;
            let _ = live.send_multipart([topic.as_bytes(), &json], zmq::DONTWAIT);
        }
        shutdown.sleep(PROBE_EVERY.saturating_sub(round.elapsed()));
    }
    Ok(())
}

/// A TCP probe of every target, [`MAX_IN_FLIGHT`] at a time; results in
/// target order.
async fn probe_all(targets: &[Target]) -> Vec<Option<Duration>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut set = tokio::task::JoinSet::new();
    for (n, t) in targets.iter().enumerate() {
        let (addr, port, permits) = (t.address.clone(), t.port, Arc::clone(&permits));
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (n, probe(&addr, port).await)
        });
    }
    let mut out = vec![None; targets.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((n, rtt)) = r {
            out[n] = rtt;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tells_listening_from_closed_ports() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(rt.block_on(probe("127.0.0.1", open)).is_some());
        assert!(rt.block_on(probe("127.0.0.1", closed)).is_none());
    }
}
