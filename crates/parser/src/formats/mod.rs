//! Line formats: one line (the first line of a multiline event) in, a
//! timestamp and fields out. The body is always the event's whole text, so
//! full-text search sees everything whatever the format.
//!
//! - `raw`: no fields, ts = time read.
//! - [`syslog`]: RFC 3164 and RFC 5424.
//! - [`json`]: one JSON object per line.
//! - [`combined`]: nginx/Apache combined (and common) log format.
//! - [`journal`]: systemd journal entries (`journalctl -o json`): the one
//!   format whose body is not the whole line but the entry's `MESSAGE`.
//! - [`pattern`]: a regex with named captures (`parser: {type: regex}`).
//! - [`ingested`]: NDJSON objects received over HTTP (`message`, `ts`).
//! - [`time`]: timestamps without a zone, without a year, as epoch numbers.

pub mod combined;
pub mod ingested;
pub mod journal;
pub mod json;
pub mod pattern;
pub mod syslog;
pub mod time;

use chrono::{DateTime, Utc};
use rill_config::ParserSpec;
use serde_json::{Map, Value};

/// What a format read from a line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// `None`: the line carries no time; the event takes the time it was read.
    pub ts: Option<DateTime<Utc>>,
    pub fields: Map<String, Value>,
    /// The event's text when it is not the line itself (a journal entry's
    /// `MESSAGE`).
    pub body: Option<String>,
}

/// Why a line could not be read; it is then indexed as raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

impl FormatError {
    pub fn new(msg: impl Into<String>) -> Self {
        FormatError(msg.into())
    }
}

/// A configured format, ready to parse (regexes compiled).
#[derive(Debug, Clone)]
pub enum LineFormat {
    Raw,
    Syslog(syslog::Syslog),
    Json(json::Json),
    Combined,
    Journal,
    Pattern(pattern::Pattern),
    /// Not configured: the lines of the HTTP ingest endpoint's NDJSON.
    Ingested,
}

impl LineFormat {
    /// Builds the format for a validated parser spec.
    pub fn new(spec: &ParserSpec) -> Result<LineFormat, FormatError> {
        Ok(match spec {
            ParserSpec::Raw => LineFormat::Raw,
            ParserSpec::Syslog { timezone } => LineFormat::Syslog(syslog::Syslog {
                timezone: *timezone,
            }),
            ParserSpec::Json {
                timestamp_key,
                timezone,
            } => LineFormat::Json(json::Json {
                timestamp_key: timestamp_key.clone(),
                timezone: *timezone,
            }),
            ParserSpec::Combined => LineFormat::Combined,
            ParserSpec::Journal => LineFormat::Journal,
            ParserSpec::Regex { pattern, timestamp } => {
                LineFormat::Pattern(pattern::Pattern::new(pattern, timestamp.clone())?)
            }
        })
    }

    /// Reads `line`; `read_at` is when the tap read it (syslog's year and
    /// stamps without a date are completed from it).
    pub fn parse(&self, line: &str, read_at: DateTime<Utc>) -> Result<Parsed, FormatError> {
        match self {
            LineFormat::Raw => Ok(Parsed::default()),
            LineFormat::Syslog(s) => s.parse(line, read_at),
            LineFormat::Json(j) => j.parse(line, read_at),
            LineFormat::Combined => combined::parse(line),
            LineFormat::Journal => journal::parse(line),
            LineFormat::Pattern(p) => p.parse(line, read_at),
            LineFormat::Ingested => ingested::parse(line, read_at),
        }
    }
}
