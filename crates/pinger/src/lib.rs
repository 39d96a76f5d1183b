//! masspinger: probes every configured host and publishes `ping/<host>`.
//!
//! A probe is a TCP connect to the host's SSH port with a 1 s deadline (ICMP
//! needs privileges we do not assume). All hosts are probed concurrently on a
//! small tokio runtime every [`PROBE_EVERY`]; a result is published when a
//! host changes state and at least every [`REPEAT_EVERY`], so late
//! subscribers learn the state too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_bus::socket::{self, Role};
use rill_config::Config;
use rill_process::Shutdown;
use rill_proto::{Ping, Topic};
use tracing::info;

pub const PROBE_EVERY: Duration = Duration::from_secs(2);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
pub const REPEAT_EVERY: Duration = Duration::from_secs(10);

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

pub fn run(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let live = socket::open(&ctx, zmq::PUB, Role::Live)?;
    socket::connect(&live, &cfg.bus_endpoint())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let targets: Vec<(String, String, u16)> = cfg
        .hosts
        .values()
        .map(|h| (h.name.clone(), h.address.clone(), h.port))
        .collect();
    let mut last: HashMap<String, (bool, Instant)> = HashMap::new();
    info!(hosts = targets.len(), "masspinger probing");
    while !shutdown.requested() {
        let results = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (name, addr, port) in targets.iter().cloned() {
                set.spawn(async move { (name, probe(&addr, port).await) });
            }
            let mut out = Vec::with_capacity(targets.len());
            while let Some(r) = set.join_next().await {
                if let Ok(r) = r {
                    out.push(r);
                }
            }
            out
        });
        for (host, rtt) in results {
            let up = rtt.is_some();
            let changed = last
                .get(&host)
                .is_none_or(|(was, at)| *was != up || at.elapsed() >= REPEAT_EVERY);
            if !changed {
                continue;
            }
            if last.get(&host).is_some_and(|(was, _)| *was != up) {
                info!(host = %host, up, "reachability changed");
            }
            last.insert(host.clone(), (up, Instant::now()));
            let ping = Ping {
                host: host.clone(),
                up,
                rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
                at: Utc::now(),
            };
            let topic = Topic::Ping { host: &host }.to_string();
            let json = serde_json::to_vec(&ping)?;
            let _ = live.send_multipart([topic.as_bytes(), &json], zmq::DONTWAIT);
        }
        shutdown.sleep(PROBE_EVERY);
    }
    Ok(())
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
