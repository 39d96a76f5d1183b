//! The `ingest:` block: events received over HTTP. Off loopback it needs
//! an allowlist and bearer tokens (each token names its source).

use std::net::SocketAddr;
use std::path::Path;

use crate::error::Invalid;
use crate::hub::{IngestSettings, Tokens};
use crate::raw::{RawIngest, RawSize};
use crate::validate::streams::{cidrs, tls};
use crate::values::{parse_size, resolve, Environment};

/// The largest `max_body` taken.
const MAX_MAX_BODY: u64 = 64 << 20;

pub fn validate(base: &Path, raw: RawIngest, env: Environment) -> Result<IngestSettings, Invalid> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        Invalid::at(
            ".listen",
            format!(
                "expected ADDRESS:PORT (e.g. 127.0.0.1:7690), got {:?}",
                raw.listen
            ),
        )
    })?;
    let allow = cidrs(raw.allow.unwrap_or_default())?;
    if !listen.ip().is_loopback() {
        let why = format!("required because listen {listen} is reachable from other machines");
        if allow.is_empty() {
            return Err(Invalid::at(
                ".allow",
                format!("{why}: a CIDR allowlist, e.g. [10.0.0.0/8]"),
            ));
        }
        if raw.tokens_file.is_none() {
            return Err(Invalid::at(
                ".tokens_file",
                format!("{why}: a file of TOKEN SOURCE lines (bearer tokens)"),
            ));
        }
        if raw.tls.is_none() {
            return Err(Invalid::at(
                ".tls",
                format!("{why}: {{cert: FILE, key: FILE}} (PEM), so tokens never cross the network in clear text"),
            ));
        }
    }
    let tokens_file = raw.tokens_file.map(|f| resolve(base, &f));
    if let (Environment::Check, Some(path)) = (env, &tokens_file) {
        Tokens::load(path).map_err(|m| Invalid::at(".tokens_file", m))?;
    }
    let max_body = match raw.max_body {
        None => IngestSettings::DEFAULT_MAX_BODY,
        Some(RawSize(text)) => parse_size(&text)
            .and_then(|n| {
                if (1024..=MAX_MAX_BODY).contains(&n) {
                    Ok(n)
                } else {
                    Err(format!(
                        "expected between 1KiB and 64MiB, got {text:?} ({n} bytes)"
                    ))
                }
            })
            .map_err(|m| Invalid::at(".max_body", m))?,
    };
    let tls = raw
        .tls
        .map(|t| tls(base, t, env))
        .transpose()
        .map_err(|e| e.under(".tls"))?;
    Ok(IngestSettings {
        listen,
        allow,
        tokens_file,
        max_body,
        tls,
    })
}
