//! The `search:` block: where the HTTP search API listens.

use std::net::SocketAddr;

use crate::error::Invalid;
use crate::model::SearchSettings;
use crate::raw::RawSearch;

/// The block's settings over the defaults; without the block, the defaults.
pub fn validate(raw: Option<RawSearch>) -> Result<SearchSettings, Invalid> {
    let mut search = SearchSettings::default();
    if let Some(s) = raw {
        if let Some(v) = s.listen {
            search.listen = listen_address(&v, s.allow_remote.unwrap_or(false))
                .map_err(|m| Invalid::at(".listen", m))?;
        }
    }
    Ok(search)
}

/// `off`, or `ADDRESS:PORT` on loopback unless remote access was asked for.
fn listen_address(v: &str, allow_remote: bool) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = v
        .parse()
        .map_err(|_| format!("expected ADDRESS:PORT (e.g. 127.0.0.1:7680) or `off`, got {v:?}"))?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "expected a loopback address (127.0.0.1 or [::1]), got {v}: the search API has \
             no authentication; set search.allow_remote: true to serve other machines"
        ));
    }
    Ok(Some(addr))
}
