//! What a cluster costs etcd: one member owning `hosts` hosts of `logs`
//! logs each (a real single-node etcd on loopback), every host's
//! checkpoint changing every second as a busy tap's does; etcd's own
//! counters (`/metrics`: proposals committed, puts, transactions, ranges)
//! over `seconds`, per second and per 1,000 logs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rill_config::cluster::{Advertise, ClusterSettings};
use rill_test_support::TestEtcd;

#[derive(clap::Args)]
pub struct Args {
    /// Hosts the member owns.
    #[arg(long, default_value_t = 100)]
    pub hosts: usize,
    /// Logs per host (each in the host's checkpoint).
    #[arg(long, default_value_t = 10)]
    pub logs: usize,
    /// How long to measure.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The lease's time to live, in seconds.
    #[arg(long, default_value_t = 10)]
    pub lease_ttl: u64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let etcd = TestEtcd::start(1);
    let dir = tempfile::tempdir()?;
    let hosts: Vec<String> = (0..a.hosts).map(|i| format!("web{i:04}")).collect();
    let settings = ClusterSettings {
        etcd: etcd.urls(),
        name: "bench".into(),
        member: "a".into(),
        advertise: Advertise {
            streams: "tcp://127.0.0.1:7600".into(),
            search: None,
        },
        lease_ttl: Duration::from_secs(a.lease_ttl),
    };
    let write = |round: u64| -> anyhow::Result<()> {
        for h in &hosts {
            let logs: BTreeMap<String, serde_json::Value> = (0..a.logs)
                .map(|l| {
                    (
                        format!("log{l}"),
                        serde_json::json!({"file_id": "65024:1234567:89abcdef", "offset": round * 4096 + l as u64, "verify": {"len": 64, "fp": 1}}),
                    )
                })
                .collect();
            let c = serde_json::json!({"generation": "g", "logs": logs});
            std::fs::write(dir.path().join(format!("{h}.json")), c.to_string())?;
        }
        Ok(())
    };
    write(0)?;
    let node = rill_cluster::node::Node::join(
        &settings,
        hosts.clone(),
        dir.path().to_path_buf(),
        rill_cluster::tenure::path(dir.path()),
    )
    .context("join")?;
    // Wait until the member owns every host.
    let t = Instant::now();
    let mut owned = 0;
    while owned < a.hosts {
        if let Some(c) = node.changes().map_err(anyhow::Error::msg)? {
            owned += c.start.len();
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("owned {owned} of {} hosts after 60 s", a.hosts);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "took {} hosts in {:.1} s; measuring {} s with every checkpoint changing every second",
        a.hosts,
        t.elapsed().as_secs_f64(),
        a.seconds
    );
    let before = counters(&etcd.url(0))?;
    let start = Instant::now();
    let mut round = 1;
    while start.elapsed() < Duration::from_secs(a.seconds) {
        write(round)?;
        round += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let after = counters(&etcd.url(0))?;
    let secs = start.elapsed().as_secs_f64();
    let logs = (a.hosts * a.logs) as f64;
    println!(
        "{} hosts x {} logs = {} logs, lease_ttl {} s, {secs:.0} s:",
        a.hosts, a.logs, logs, a.lease_ttl
    );
    for (name, b) in &before {
        let d = after.get(name).copied().unwrap_or(*b) - b;
        println!(
            "  {name}: {:.2}/s ({:.2}/s per 1,000 logs)",
            d / secs,
            d / secs / logs * 1000.0
        );
    }
    drop(node);
    Ok(())
}

/// etcd's counters that say what it did.
fn counters(url: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = ureq::get(format!("{url}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?;
    let wanted = [
        "etcd_server_proposals_committed_total",
        "etcd_mvcc_put_total",
        "etcd_mvcc_txn_total",
        "etcd_mvcc_range_total",
    ];
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, v)) = line.split_once(' ') {
            if wanted.contains(&name) {
                out.insert(name.to_owned(), v.trim().parse().unwrap_or(0.0));
            }
        }
    }
    Ok(out)
}
