//! The tantivy index under `state_dir/index`.
//!
//! - [`schema`]: the fields and how each is indexed.
//! - [`IndexWriter`]: adds lines, idempotent on each line's durable name
//!   (`host/log/file_id/offset`): re-adding a line replaces it, so a
//!   re-delivered line is never counted twice.
//!   Upserts are cheap: lines of one file that arrive in order (each starts
//!   where the previous ended) are buffered as a *run* and replaced with one
//!   delete over their offset range, instead of one delete per line.
//! - [`IndexSearcher`]: read-only; works beside a running writer (it sees
//!   what was committed when it was opened, [`IndexSearcher::reload`] moves
//!   it on) and after the writer stopped. Hits come newest first (by `ts`,
//!   then by offset), or oldest first.
//! - [`query`]: the query language (tantivy syntax over `body`, field
//!   filters, `--since/--until`) and errors that name a position.
//! - [`histogram`]: match counts per time bucket, from the `ts` fast field.
//! - [`highlight`]: where the query's terms are in a body.
//! - [`time`]: `15m`, `2h`, `7d` and RFC 3339 bounds.
//! - [`Context`]: the lines around a hit, found by walking the file's
//!   offset blocks (context.rs).
//! - [`deadline`]: stopping a search past its time or once its client left.

mod context;
pub mod deadline;
pub mod highlight;
pub mod histogram;
pub mod query;
mod schema;
mod search;
pub mod tenure;
pub mod time;
mod writer;

pub use context::Context;
pub use deadline::Deadline;
pub use histogram::Bucket;
pub use query::{QueryError, SearchRequest};
pub use search::{Hits, IndexSearcher};
pub use writer::{IndexWriter, WriterOptions};

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rill_proto::FileId;
use serde::{Deserialize, Serialize};

/// `t` as tantivy stores it. tantivy keeps nanoseconds in an i64, so it
/// holds 1677-09-21 to 2262-04-11; a time outside (a log line that says
/// year 9999, a `--since 100000w`) is clamped to the nearest end instead of
/// overflowing.
pub fn tantivy_time(t: DateTime<Utc>) -> tantivy::DateTime {
    const LIMIT: i64 = i64::MAX / 1000;
    tantivy::DateTime::from_timestamp_micros(t.timestamp_micros().clamp(-LIMIT, LIMIT))
}

/// One line as stored in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedLine {
    /// Event time; for the raw parser the time the tap read the line.
    /// Stored with microsecond precision.
    pub ts: DateTime<Utc>,
    pub host: String,
    pub log: String,
    pub path: String,
    pub file_id: FileId,
    /// Byte offset of the event's first line in the file named by `file_id`.
    pub offset: u64,
    /// Byte offset just past the event's last line (where the next line
    /// starts); 0 when unknown. Lines that follow each other in a file are
    /// upserted as one run.
    pub end_offset: u64,
    /// The whole event text.
    pub body: String,
    /// What the parser extracted; searchable as `fields.<key>:value`.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The parser could not read the line (indexed as raw).
    pub parse_error: bool,
    /// The collector that first read it (`collector:us-1`); empty for
    /// lines indexed before collectors were named.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collector: String,
}

impl IndexedLine {
    /// The event as the parser publishes it.
    pub fn from_event(e: &rill_proto::ParsedEvent) -> IndexedLine {
        IndexedLine {
            ts: e.ts,
            host: e.host.clone(),
            log: e.log.clone(),
            path: e.path.clone(),
            file_id: e.file_id,
            offset: e.offset,
            end_offset: e.end_offset,
            body: e.body.clone(),
            fields: e.fields.clone(),
            parse_error: e.parse_error,
            collector: e.collector.clone(),
        }
    }
}

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no index at {path} (nothing has been indexed yet, or state_dir is wrong)")]
    Missing { path: PathBuf },
    #[error("could not open index at {path}: {source}")]
    Open {
        path: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("index at {path} was made by an older rill (field `{field}` is missing); delete it to rebuild from the servers")]
    OldSchema { path: PathBuf, field: String },
    #[error("the search was stopped: it passed its deadline or its client went away")]
    Stopped,
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

/// An event as `rill search --json` prints it and the HTTP API returns it:
/// the stored event, the byte ranges of matched terms in `body`
/// (`highlights`), and the context lines when asked for (`before`, `after`).
pub fn hit_json(
    line: &IndexedLine,
    highlights: &[std::ops::Range<usize>],
    context: Option<&Context>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(line).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        if line.path.is_empty() {
            o.remove("path");
        }
        o.insert(
            "highlights".into(),
            highlights
                .iter()
                .map(|r| serde_json::json!([r.start, r.end]))
                .collect(),
        );
        if let Some(c) = context {
            let lines = |ls: &[IndexedLine]| -> serde_json::Value {
                ls.iter().map(|l| hit_json(l, &[], None)).collect()
            };
            o.insert("before".into(), lines(&c.before));
            o.insert("after".into(), lines(&c.after));
            if c.truncated {
                o.insert("context_truncated".into(), true.into());
            }
        }
    }
    v
}
