//! The `cluster:` block: collectors that share one config and spread its
//! hosts among themselves, coordinated by etcd (docs/cluster.md). Checked
//! in `validate/cluster.rs`.

use std::time::Duration;

/// A validated `cluster:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// etcd's client URLs (`http://HOST:PORT`), tried in order.
    pub etcd: Vec<String>,
    /// The cluster's name: every key lives under `/rill/<name>/`, so
    /// several clusters can share one etcd.
    pub name: String,
    /// This member's name (default: `collector`, itself by default the
    /// host name). Two live members may not share one.
    pub member: String,
    /// How other members and clients reach this one.
    pub advertise: Advertise,
    /// How long this member's hosts stay its own after it stops renewing
    /// its lease (it dies or loses etcd).
    pub lease_ttl: Duration,
}

/// The endpoints a member advertises in etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct Advertise {
    /// Its stream endpoint as others reach it (default `streams.endpoint`).
    pub streams: String,
    /// Its search API as others reach it (`http(s)://HOST:PORT`; default
    /// `search.listen`, none when that is off).
    pub search: Option<String>,
}

impl ClusterSettings {
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

    /// The prefix of every key of this cluster.
    pub fn prefix(&self) -> String {
        format!("/rill/{}/", self.name)
    }
}
