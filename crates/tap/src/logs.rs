//! Every log one host's tap follows, by kind: files (each a [`Follow`],
//! pattern members included), patterns (their listings) and journals.

use crate::follow::Follow;
use crate::journal::JournalLog;
use crate::pattern::Pattern;

#[derive(Default)]
pub struct Logs {
    /// Files, by the number the durable path and the status board know
    /// them by: a pattern's members are added at the end, and a retired
    /// one keeps its place.
    pub follows: Vec<Follow>,
    pub patterns: Vec<Pattern>,
    pub journals: Vec<JournalLog>,
}
