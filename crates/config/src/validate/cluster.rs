//! `cluster:`: etcd's URLs, the cluster and member names, what this member
//! advertises and its lease's time to live.

use std::net::SocketAddr;

use crate::cluster::{Advertise, ClusterSettings};
use crate::error::Invalid;
use crate::raw::RawCluster;
use crate::values::{check_endpoint, check_name, duration_between};

/// etcd endpoints at most.
const MAX_ETCD: usize = 16;

/// The `cluster:` block; `collector`, `streams` and `search_listen` give
/// the defaults of `member` and `advertise`.
pub fn validate(
    raw: RawCluster,
    collector: &str,
    streams: &str,
    search_listen: Option<SocketAddr>,
) -> Result<ClusterSettings, Invalid> {
    let Some(etcd) = raw.etcd else {
        return Err(Invalid::at(
            ".etcd",
            "required: the client URLs of the etcd cluster, e.g. [http://10.0.0.1:2379]",
        ));
    };
    if etcd.is_empty() || etcd.len() > MAX_ETCD {
        return Err(Invalid::at(
            ".etcd",
            format!("expected 1 to {MAX_ETCD} etcd URLs, got {}", etcd.len()),
        ));
    }
    for (i, url) in etcd.iter().enumerate() {
        etcd_url(url).map_err(|m| Invalid::at(format!(".etcd[{i}]"), m))?;
    }
    let Some(name) = raw.name else {
        return Err(Invalid::at(
            ".name",
            "required: the cluster's name (its keys live under /rill/<name>/ in etcd)",
        ));
    };
    check_name("cluster", &name).map_err(|m| Invalid::at(".name", m))?;
    let member = raw.member.unwrap_or_else(|| collector.to_owned());
    check_name("member", &member).map_err(|m| Invalid::at(".member", m))?;
    let advertise = raw.advertise.unwrap_or_default();
    let streams = advertise.streams.unwrap_or_else(|| streams.to_owned());
    check_endpoint(&streams).map_err(|m| Invalid::at(".advertise.streams", m))?;
    let search = match advertise.search {
        Some(s) => {
            http_url(&s).map_err(|m| Invalid::at(".advertise.search", m))?;
            Some(s)
        }
        None => search_listen.map(|a| format!("http://{a}")),
    };
    let lease_ttl = match raw.lease_ttl {
        Some(t) => {
            let d = duration_between(&t, "5s", "5m").map_err(|m| Invalid::at(".lease_ttl", m))?;
            if d.subsec_nanos() != 0 {
                return Err(Invalid::at(
                    ".lease_ttl",
                    format!("expected whole seconds (etcd's leases are), got {t}"),
                ));
            }
            d
        }
        None => ClusterSettings::DEFAULT_LEASE_TTL,
    };
    Ok(ClusterSettings {
        etcd,
        name,
        member,
        advertise: Advertise { streams, search },
        lease_ttl,
    })
}

/// `http://HOST:PORT` (etcd's JSON gateway; TLS to etcd is not supported).
fn etcd_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: TLS to etcd is not supported yet; expected http://HOST:PORT"
        ));
    }
    match url.strip_prefix("http://") {
        Some(rest) if host_port(rest) => Ok(()),
        _ => Err(format!("expected http://HOST:PORT, got {url:?}")),
    }
}

/// `http://HOST:PORT` or `https://HOST:PORT`.
fn http_url(url: &str) -> Result<(), String> {
    match url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        Some(rest) if host_port(rest) => Ok(()),
        _ => Err(format!(
            "expected http://HOST:PORT or https://HOST:PORT, got {url:?}"
        )),
    }
}

/// `HOST:PORT` with nothing after it (no path, no user).
fn host_port(rest: &str) -> bool {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && p.parse::<u16>().is_ok_and(|p| p > 0)
            && !h.contains(['/', '@', '?', '#', ' '])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawCluster {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn member_and_advertise_default_to_the_collector_and_its_endpoints() {
        let c = validate(
            raw("{etcd: ['http://10.0.0.1:2379'], name: prod}"),
            "eu-1",
            "tcp://10.0.0.7:7600",
            Some("10.0.0.7:7680".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(c.member, "eu-1");
        assert_eq!(c.advertise.streams, "tcp://10.0.0.7:7600");
        assert_eq!(c.advertise.search.as_deref(), Some("http://10.0.0.7:7680"));
        assert_eq!(c.lease_ttl, ClusterSettings::DEFAULT_LEASE_TTL);
        assert_eq!(c.prefix(), "/rill/prod/");
    }

    #[test]
    fn urls_with_paths_users_or_no_port_are_refused() {
        for url in [
            "http://10.0.0.1",
            "http://10.0.0.1:0",
            "http://u@10.0.0.1:2379",
            "http://10.0.0.1:2379/v3",
            "http://:2379",
            "https://10.0.0.1:2379",
        ] {
            assert!(etcd_url(url).is_err(), "{url}");
        }
        assert!(etcd_url("http://etcd-1.example:2379/").is_ok());
        assert!(http_url("https://10.0.0.7:7680").is_ok());
    }
}
