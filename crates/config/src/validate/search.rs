//! The `search:` block: where the HTTP search API (and the page and
//! `/metrics`) listens, with TLS and bearer tokens. Off loopback both are
//! required: the API shows every line Rill holds.

use std::net::SocketAddr;
use std::path::Path;

use crate::error::Invalid;
use crate::hub::Tokens;
use crate::model::SearchSettings;
use crate::raw::RawSearch;
use crate::validate::streams::tls;
use crate::values::{resolve, Environment};

/// The block's settings over the defaults; without the block, the defaults.
pub fn validate(
    base: &Path,
    raw: Option<RawSearch>,
    env: Environment,
) -> Result<SearchSettings, Invalid> {
    let mut search = SearchSettings::default();
    let Some(s) = raw else {
        return Ok(search);
    };
    if s.allow_remote.is_some() {
        return Err(Invalid::at(
            ".allow_remote",
            "is no longer a key: a non-loopback search.listen needs search.tls and \
             search.tokens_file instead",
        ));
    }
    if let Some(v) = s.listen {
        search.listen = listen_address(&v).map_err(|m| Invalid::at(".listen", m))?;
    }
    if let Some(addr) = search.listen.filter(|a| !a.ip().is_loopback()) {
        let why = format!("required because listen {addr} is reachable from other machines");
        if s.tls.is_none() {
            return Err(Invalid::at(
                ".tls",
                format!("{why}: {{cert: FILE, key: FILE}} (PEM)"),
            ));
        }
        if s.tokens_file.is_none() {
            return Err(Invalid::at(
                ".tokens_file",
                format!("{why}: a file of TOKEN NAME lines (bearer tokens)"),
            ));
        }
    }
    if let Some(t) = s.tls {
        search.tls = Some(tls(base, t, env).map_err(|e| e.under(".tls"))?);
    }
    if let Some(f) = s.tokens_file {
        let path = resolve(base, &f);
        if env == Environment::Check {
            Tokens::load(&path).map_err(|m| Invalid::at(".tokens_file", m))?;
        }
        search.tokens_file = Some(path);
    }
    Ok(search)
}

/// `off`, or `ADDRESS:PORT`.
fn listen_address(v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("expected ADDRESS:PORT (e.g. 127.0.0.1:7680) or `off`, got {v:?}"))
}
