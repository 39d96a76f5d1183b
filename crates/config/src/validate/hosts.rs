//! The `hosts:` block: the servers to follow logs on. Each host's `auth`
//! and `sessions` blocks are checked by their own modules.

use std::collections::BTreeMap;
use std::path::Path;

use super::{auth, sessions};
use crate::error::Invalid;
use crate::model::{Host, Secret};
use crate::raw::RawHost;
use crate::values::{check_name, resolve, Environment};

/// Every host, keyed by name. `base` is the config file's folder, `run_dir`
/// where default sessions sockets go; no sessions endpoint may be another
/// host's or `streams_endpoint`.
pub fn validate(
    raw: BTreeMap<String, RawHost>,
    base: &Path,
    run_dir: &Path,
    (streams_endpoint, federation): (&str, Option<&str>),
    env: Environment,
) -> Result<BTreeMap<String, Host>, Invalid> {
    if raw.is_empty() {
        return Err(Invalid::at("", "expected at least one host"));
    }
    let mut hosts = BTreeMap::new();
    for (name, h) in raw {
        let host = host(&name, h, base, run_dir, env).map_err(|e| e.under(&format!(".{name}")))?;
        hosts.insert(name, host);
    }
    sessions::check_unique(&hosts, streams_endpoint, federation)?;
    check_jumps(&hosts)?;
    Ok(hosts)
}

/// Every `jump` names another host, and no chain of jumps comes back to
/// where it started.
fn check_jumps(hosts: &BTreeMap<String, Host>) -> Result<(), Invalid> {
    for (name, h) in hosts {
        let Some(first) = &h.jump else { continue };
        let key = format!(".{name}.jump");
        let mut chain = vec![name.as_str()];
        let mut next = Some(first.as_str());
        while let Some(j) = next {
            let Some(jh) = hosts.get(j) else {
                let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
                return Err(Invalid::at(
                    key,
                    format!("unknown host {j:?}; expected one of: {}", known.join(", ")),
                ));
            };
            if chain.contains(&j) {
                chain.push(j);
                return Err(Invalid::at(
                    key,
                    format!("the jumps go round in a circle: {}", chain.join(" -> ")),
                ));
            }
            chain.push(j);
            next = jh.jump.as_deref();
        }
    }
    Ok(())
}

/// One host; errors are keyed below `hosts.<name>`.
fn host(
    name: &str,
    h: RawHost,
    base: &Path,
    run_dir: &Path,
    env: Environment,
) -> Result<Host, Invalid> {
    check_name("host", name).map_err(|m| Invalid::at("", m))?;
    if h.address.trim().is_empty() {
        return Err(Invalid::at(
            ".address",
            "expected a host name or IP address",
        ));
    }
    if h.port == Some(0) {
        return Err(Invalid::at(".port", "expected a port between 1 and 65535"));
    }
    if h.user.trim().is_empty() {
        return Err(Invalid::at(".user", "expected a user name"));
    }
    let auth = auth::validate(base, h.auth, env).map_err(|e| e.under(".auth"))?;
    let sudo_password = match (h.sudo_password_env, h.sudo_password_file) {
        (Some(_), Some(_)) => {
            return Err(Invalid::at(
                ".sudo_password_file",
                "expected one of `sudo_password_env` and `sudo_password_file`, not both",
            ))
        }
        (Some(name), None) => Some(auth::env_secret(".sudo_password_env", name, env)?),
        (None, Some(file)) => {
            let path = resolve(base, &file);
            if let (Environment::Check, Err(e)) = (env, std::fs::File::open(&path)) {
                return Err(Invalid::at(
                    ".sudo_password_file",
                    format!("expected a readable file, {}: {e}", path.display()),
                ));
            }
            Some(Secret::File(path))
        }
        (None, None) => None,
    };
    let sessions = h
        .sessions
        .map(|s| sessions::validate(base, run_dir, name, s, env))
        .transpose()
        .map_err(|e| e.under(".sessions"))?;
    Ok(Host {
        name: name.to_owned(),
        address: h.address,
        port: h.port.unwrap_or(22),
        user: h.user,
        auth,
        known_hosts: h.known_hosts.unwrap_or_default(),
        sessions,
        sudo_password,
        jump: h.jump,
    })
}
