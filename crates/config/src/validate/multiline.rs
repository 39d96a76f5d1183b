//! `logs.<name>.multiline`: which lines join the previous event, and when
//! a pending event is complete.

use std::time::Duration;

use crate::error::Invalid;
use crate::model::{Multiline, MultilineRule};
use crate::raw::RawMultiline;
use crate::values::{duration_between, number_between};

/// Exactly one of `continues` and `starts`, each a regex that compiles.
pub fn validate(m: RawMultiline) -> Result<Multiline, Invalid> {
    let compile = |k: &str, p: String| {
        regex::Regex::new(&p)
            .map(|_| p)
            .map_err(|e| Invalid::at(k, format!("expected a valid regex: {e}")))
    };
    let rule = match (m.continues, m.starts) {
        (Some(c), None) => MultilineRule::Continues(compile(".continues", c)?),
        (None, Some(s)) => MultilineRule::Starts(compile(".starts", s)?),
        (c, _) => {
            return Err(Invalid::at(
                "",
                format!(
                    "expected exactly one of `continues` or `starts`, found {}",
                    if c.is_some() { "both" } else { "neither" }
                ),
            ))
        }
    };
    let flush_after = match m.flush_after {
        None => Duration::from_millis(500),
        Some(v) => {
            duration_between(&v, "10ms", "60s").map_err(|e| Invalid::at(".flush_after", e))?
        }
    };
    let max_lines = match m.max_lines {
        None => 1000,
        Some(n) => {
            number_between(n, 2, 100_000).map_err(|e| Invalid::at(".max_lines", e))? as usize
        }
    };
    Ok(Multiline {
        rule,
        flush_after,
        max_lines,
    })
}
