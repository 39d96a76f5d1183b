//! `collector` (this collector's id) and `upstreams:` (the collectors
//! whose streams this one subscribes to and rebroadcasts).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Invalid;
use crate::hub::Upstream;
use crate::raw::RawUpstream;
use crate::validate::streams::{curve_client, plain_login};
use crate::values::{check_endpoint, check_name, Environment};

/// Upstreams at most.
const MAX_UPSTREAMS: usize = 64;
/// Topic patterns per upstream at most, and the longest one.
const MAX_TOPICS: usize = 32;
const MAX_TOPIC_BYTES: usize = 256;

/// `collector`, default this machine's host name (or `rill` without one).
pub fn collector(raw: Option<String>) -> Result<String, Invalid> {
    let name = match raw {
        Some(n) => n,
        None => host_name().unwrap_or_else(|| "rill".to_owned()),
    };
    check_name("collector", &name).map_err(|m| Invalid::at("", m))?;
    Ok(name)
}

/// The machine's host name, if it is a valid collector name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_owned();
    rill_proto::valid_name(&name).then_some(name)
}

pub fn validate(
    base: &Path,
    raw: BTreeMap<String, RawUpstream>,
    collector: &str,
    own_endpoints: [Option<&String>; 2],
    env: Environment,
) -> Result<BTreeMap<String, Upstream>, Invalid> {
    if raw.len() > MAX_UPSTREAMS {
        return Err(Invalid::at(
            "",
            format!(
                "expected at most {MAX_UPSTREAMS} upstreams, got {}",
                raw.len()
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, u) in raw {
        let up = upstream(base, &name, u, collector, own_endpoints, env)
            .map_err(|e| e.under(&format!(".{name}")))?;
        out.insert(name, up);
    }
    Ok(out)
}

fn upstream(
    base: &Path,
    name: &str,
    raw: RawUpstream,
    collector: &str,
    own_endpoints: [Option<&String>; 2],
    env: Environment,
) -> Result<Upstream, Invalid> {
    check_name("upstream", name).map_err(|m| Invalid::at("", m))?;
    if name == collector {
        return Err(Invalid::at(
            "",
            format!("is this collector's own id ({collector}); an upstream is another collector"),
        ));
    }
    check_endpoint(&raw.endpoint).map_err(|m| Invalid::at(".endpoint", m))?;
    if own_endpoints.contains(&Some(&raw.endpoint)) {
        return Err(Invalid::at(
            ".endpoint",
            format!(
                "{} is this collector's own; expected another collector's streams.federation",
                raw.endpoint
            ),
        ));
    }
    let topics = raw.topics.unwrap_or_else(|| vec!["line/#".to_owned()]);
    if topics.is_empty() || topics.len() > MAX_TOPICS {
        return Err(Invalid::at(
            ".topics",
            format!(
                "expected 1 to {MAX_TOPICS} topic patterns, got {}",
                topics.len()
            ),
        ));
    }
    for (i, t) in topics.iter().enumerate() {
        let key = format!(".topics[{i}]");
        if t.len() > MAX_TOPIC_BYTES {
            return Err(Invalid::at(
                key,
                format!("expected at most {MAX_TOPIC_BYTES} bytes, got {}", t.len()),
            ));
        }
        rill_proto::TopicPattern::parse(t).map_err(|e| Invalid::at(key, e.to_string()))?;
    }
    let index = raw.index.unwrap_or(false);
    if index && !topics.iter().all(|t| t.starts_with("line/")) {
        return Err(Invalid::at(
            ".index",
            "expected topics under line/ only when index is true: the index takes lines, \
             and parses them into parsed/ itself",
        ));
    }
    let plain = raw
        .plain
        .map(|p| plain_login(base, p, env))
        .transpose()
        .map_err(|e| e.under(".plain"))?;
    let curve = raw
        .curve
        .map(|c| curve_client(base, c, env))
        .transpose()
        .map_err(|e| e.under(".curve"))?;
    if plain.is_some() && curve.is_some() {
        return Err(Invalid::at(
            ".curve",
            "expected either plain or curve, not both: a ZeroMQ socket takes one login mechanism",
        ));
    }
    Ok(Upstream {
        name: name.to_owned(),
        endpoint: raw.endpoint,
        topics,
        index,
        plain,
        curve,
    })
}
