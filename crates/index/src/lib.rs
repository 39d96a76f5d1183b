//! The tantivy index under `state_dir/index`.
//!
//! - [`schema`]: the fields and how each is indexed.
//! - [`IndexWriter`]: adds lines, idempotent on each line's durable name
//!   (`host/log/file_id/offset`): re-adding a line replaces it, so a
//!   re-delivered line is never counted twice.
//! - [`IndexSearcher`]: read-only; works beside a running writer (it sees
//!   what was committed when it was opened) and after the writer stopped.
//!   Hits come newest first (by `ts`, then by offset).

mod schema;
mod search;
mod writer;

pub use search::{IndexSearcher, SearchRequest};
pub use writer::IndexWriter;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rill_proto::FileId;
use serde::{Deserialize, Serialize};

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
    /// Byte offset of the line in the file named by `file_id`.
    pub offset: u64,
    pub body: String,
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
    #[error("invalid query {query:?}: {reason}")]
    Query { query: String, reason: String },
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}
