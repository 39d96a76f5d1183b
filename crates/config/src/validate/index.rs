//! The `index:` block: the parser's niceness and how long events are kept.

use crate::error::Invalid;
use crate::model::IndexSettings;
use crate::raw::RawIndex;
use crate::values::duration_between;

/// The longest `index.retention`: 100 years (the index's times are kept
/// well inside what a timestamp holds).
const MAX_RETENTION: &str = "36500d";

/// The block's settings over the defaults; without the block, the defaults.
pub fn validate(raw: Option<RawIndex>) -> Result<IndexSettings, Invalid> {
    let raw = raw.unwrap_or_default();
    let mut index = IndexSettings::default();
    if let Some(v) = raw.nice {
        if !(0..=19).contains(&v) {
            return Err(Invalid::at(
                ".nice",
                format!("expected a niceness between 0 and 19, got {v}"),
            ));
        }
        index.nice = v as i32;
    }
    if let Some(v) = raw.retention {
        index.retention = Some(
            duration_between(&v, "1m", MAX_RETENTION).map_err(|m| Invalid::at(".retention", m))?,
        );
    }
    Ok(index)
}
