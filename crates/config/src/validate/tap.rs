//! The `tap:` block: how taps follow files.

use crate::error::Invalid;
use crate::model::{HostsPerProcess, TapSettings};
use crate::raw::{RawHostsPerProcess, RawTap};
use crate::values::{duration_between, number_between};

/// The block's settings over the defaults; without the block, the defaults.
pub fn validate(raw: Option<RawTap>) -> Result<TapSettings, Invalid> {
    let mut tap = TapSettings::default();
    let Some(t) = raw else {
        return Ok(tap);
    };
    if let Some(v) = t.poll_interval {
        tap.poll_interval =
            duration_between(&v, "100ms", "60s").map_err(|m| Invalid::at(".poll_interval", m))?;
    }
    if let Some(v) = t.stream_poll {
        tap.stream_poll =
            duration_between(&v, "10ms", "5s").map_err(|m| Invalid::at(".stream_poll", m))?;
    }
    if let Some(v) = t.max_line_bytes {
        tap.max_line_bytes = number_between(v, 1024, 64 << 20)
            .map_err(|m| Invalid::at(".max_line_bytes", m))? as usize;
    }
    if let Some(v) = t.partial_line_after {
        tap.partial_line_after = duration_between(&v, "100ms", "1h")
            .map_err(|m| Invalid::at(".partial_line_after", m))?;
    }
    if let Some(v) = t.max_unacked_lines {
        tap.max_unacked_lines = number_between(v, 100, 1_000_000)
            .map_err(|m| Invalid::at(".max_unacked_lines", m))?
            as usize;
    }
    if let Some(v) = t.max_unacked_bytes {
        tap.max_unacked_bytes = number_between(v, 1 << 20, 256 << 20)
            .map_err(|m| Invalid::at(".max_unacked_bytes", m))?
            as usize;
    }
    if let Some(v) = t.hosts_per_process {
        tap.hosts_per_process =
            hosts_per_process(v).map_err(|m| Invalid::at(".hosts_per_process", m))?;
    }
    Ok(tap)
}

/// A number of hosts from 1 to 256, or `auto`.
fn hosts_per_process(v: RawHostsPerProcess) -> Result<HostsPerProcess, String> {
    match v {
        RawHostsPerProcess::Number(n) if (1..=256).contains(&n) => {
            Ok(HostsPerProcess::Fixed(n as usize))
        }
        RawHostsPerProcess::Word(w) if w == "auto" => Ok(HostsPerProcess::Auto),
        other => Err(format!("expected between 1 and 256, or auto, got {other}")),
    }
}
