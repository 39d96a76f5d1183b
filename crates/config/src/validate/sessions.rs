//! `hosts.<name>.sessions`: the session-control socket, its caps, and who
//! may connect. A `tcp://` endpoint other machines can reach needs both an
//! allowlist and a credentials file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::error::Invalid;
use crate::model::Host;
use crate::raw::RawSessions;
use crate::sessions::{SessionSettings, PUBLISH_SUFFIX_LEN};
use crate::values::{check_endpoint, duration_between, number_between, Environment};

/// Unix socket paths hold at most 107 bytes.
const MAX_IPC_PATH: usize = 107;

/// One host's block. `base` is the config file's folder, `run_dir` where
/// the default socket goes.
pub fn validate(
    base: &Path,
    run_dir: &Path,
    host: &str,
    raw: RawSessions,
    env: Environment,
) -> Result<SessionSettings, Invalid> {
    let endpoint =
        endpoint(raw.endpoint, run_dir, host).map_err(|m| Invalid::at(".endpoint", m))?;
    let max = match raw.max {
        None => SessionSettings::DEFAULT_MAX,
        Some(m) => number_between(m, 1, SessionSettings::MAX_MAX as u64)
            .map_err(|m| Invalid::at(".max", m))? as usize,
    };
    let pool = match raw.pool {
        None => SessionSettings::DEFAULT_POOL.min(max),
        Some(p) if p as usize <= max => p as usize,
        Some(p) => {
            return Err(Invalid::at(
                ".pool",
                format!("expected at most max ({max}), got {p}"),
            ))
        }
    };
    let max_request_age = match raw.max_request_age {
        None => SessionSettings::DEFAULT_MAX_REQUEST_AGE,
        Some(text) => {
            duration_between(&text, "1s", "1d").map_err(|m| Invalid::at(".max_request_age", m))?
        }
    };
    let allow = crate::validate::streams::cidrs(raw.allow.unwrap_or_default())?;
    let (credentials_file, curve) =
        crate::validate::streams::login(base, raw.credentials_file, raw.curve, env)?;
    let settings = SessionSettings {
        endpoint,
        max,
        pool,
        max_request_age,
        allow,
        credentials_file,
        curve,
    };
    guarded_if_remote(&settings)?;
    Ok(settings)
}

/// The endpoint as written, or `ipc://<run_dir>/<host>.sessions`: one
/// libzmq can bind, whose sessions' publish sockets fit the path limit.
fn endpoint(raw: Option<String>, run_dir: &Path, host: &str) -> Result<String, String> {
    let endpoint = raw.unwrap_or_else(|| format!("ipc://{}/{host}.sessions", run_dir.display()));
    check_endpoint(&endpoint)?;
    if let Some(rest) = endpoint.strip_prefix("tcp://") {
        // libzmq binds to addresses, not names.
        let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        if host != "*" && ip.parse::<IpAddr>().is_err() {
            return Err(format!(
                "expected an IP address (or *) to listen on, like tcp://127.0.0.1:7701, got {endpoint:?}"
            ));
        }
    }
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        if path.len() + PUBLISH_SUFFIX_LEN > MAX_IPC_PATH {
            return Err(format!(
                "the socket path {path} is {} bytes; expected at most {} so each \
                 session's publish socket ({path}.<12 hex digits>) fits the system's limit",
                path.len(),
                MAX_IPC_PATH - PUBLISH_SUFFIX_LEN
            ));
        }
    }
    Ok(endpoint)
}

/// An endpoint other machines can reach needs an allowlist and credentials.
fn guarded_if_remote(settings: &SessionSettings) -> Result<(), Invalid> {
    if settings.is_local() {
        return Ok(());
    }
    let why = format!(
        "required because endpoint {} is reachable from other machines (not loopback or ipc)",
        settings.endpoint
    );
    if settings.allow.is_empty() {
        return Err(Invalid::at(
            ".allow",
            format!("{why}: a CIDR allowlist, e.g. [10.0.0.0/8]"),
        ));
    }
    if settings.credentials_file.is_none() && settings.curve.is_none() {
        return Err(Invalid::at(
            ".credentials_file",
            format!(
                "{why}: a file of PLAIN user:password lines, or curve: {{secret_key_file, authorized_keys_dir}}"
            ),
        ));
    }
    Ok(())
}

/// No two hosts share a sessions endpoint, and none takes the streams or
/// federation one. The error is keyed below `hosts`
/// (`.web01.sessions.endpoint`).
pub fn check_unique(
    hosts: &BTreeMap<String, Host>,
    streams_endpoint: &str,
    federation: Option<&str>,
) -> Result<(), Invalid> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, h) in hosts {
        let Some(s) = &h.sessions else { continue };
        let key = format!(".{name}.sessions.endpoint");
        for (taken, by) in [
            (Some(streams_endpoint), "streams.endpoint"),
            (federation, "streams.federation"),
        ] {
            if taken == Some(s.endpoint.as_str()) {
                return Err(Invalid::at(key, format!("{} is already {by}", s.endpoint)));
            }
        }
        if let Some(other) = seen.insert(&s.endpoint, name) {
            return Err(Invalid::at(
                key,
                format!("{} is already hosts.{other}.sessions.endpoint", s.endpoint),
            ));
        }
    }
    Ok(())
}
