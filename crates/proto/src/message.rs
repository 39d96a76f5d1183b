//! The JSON frames of the live and durable paths.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which file a byte offset belongs to: device and inode, plus a checksum of the
/// file's first bytes so that a reused inode number is recognised as a new file.
///
/// Written as `<dev>:<ino>:<fingerprint hex>` on the wire and in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// POSIX `cksum` of the first [`FileId::FINGERPRINT_BYTES`] bytes (0 when the
    /// file was empty when first seen).
    pub fingerprint: u32,
}

impl FileId {
    /// How many leading bytes the fingerprint covers.
    pub const FINGERPRINT_BYTES: u64 = 64;
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:08x}", self.dev, self.ino, self.fingerprint)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a file id (expected <dev>:<ino>:<fingerprint hex>): {0:?}")]
pub struct FileIdError(String);

impl FromStr for FileId {
    type Err = FileIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FileIdError(s.to_owned());
        let mut parts = s.split(':');
        let dev = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let ino = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let fingerprint = parts
            .next()
            .and_then(|p| u32::from_str_radix(p, 16).ok())
            .ok_or_else(err)?;
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(FileId {
            dev,
            ino,
            fingerprint,
        })
    }
}

impl Serialize for FileId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Frame 2 of a `line/<host>/<log>` message. Frame 3 holds the line's raw bytes
/// without its newline (not necessarily UTF-8) or, when `lines` is more than
/// 1, that many consecutive lines of the file joined by `\n` (no newline
/// after the last): a tap sends the complete lines of one read, or of a
/// backlog's 96–128 KiB, as one message. [`LineMeta::split`] gives each line with its own meta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineMeta {
    pub host: String,
    pub log: String,
    /// The remote path the line was read from.
    pub path: String,
    pub file_id: FileId,
    /// Byte offset of the (first) line's first byte in that file. Together
    /// with host, log and file_id this names the line durably.
    pub offset: u64,
    /// Counts the lines of this topic from one tap process, starting at 0
    /// (the first line of a message; the next one has `seq + 1`): a
    /// subscriber that sees a number skipped lost that many lines (the live
    /// path drops under overload; the index does not).
    pub seq: u64,
    /// How many lines frame 3 holds (1 when absent). Each is followed by a
    /// newline in the file, so line k+1 starts 1 byte after line k ends.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lines: u64,
    /// Identifies one run of the tap: a restarted tap starts a new epoch.
    pub epoch: String,
    /// When the tap read the line.
    pub read_at: DateTime<Utc>,
    /// Set when the line ended without a newline (published after the idle time)
    /// or was split because it exceeded the maximum line length. Such a line
    /// is always a message of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The collector that first read the line (`collector` of its config;
    /// empty in messages from before this field existed, which are this
    /// collector's own). Kept unchanged when another collector rebroadcasts it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collector: String,
    /// The collectors that rebroadcast it since, in order (each adds
    /// itself): it is never sent toward any of them, nor its `collector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// The line is a JSON object received on the HTTP ingest endpoint as
    /// NDJSON: its `message` (or `msg`) is the event's text, `timestamp`
    /// (or `ts`) its time, every other key a field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ndjson: bool,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

impl LineMeta {
    /// Each line of a message (`body` being its frame 3) with the meta it
    /// would have had in a message of its own.
    pub fn split<'a>(&self, body: &'a [u8]) -> impl Iterator<Item = (LineMeta, &'a [u8])> + 'a {
        let mut next = (self.offset, self.seq);
        let first = self.clone();
        let parts: Box<dyn Iterator<Item = &'a [u8]>> = if self.lines > 1 {
            Box::new(body.split(|&b| b == b'\n'))
        } else {
            Box::new(std::iter::once(body))
        };
        parts.map(move |line| {
            let meta = LineMeta {
                offset: next.0,
                seq: next.1,
                lines: 1,
                ..first.clone()
            };
            next = (next.0 + line.len() as u64 + 1, next.1 + 1);
            (meta, line)
        })
    }

    /// The durable name of the line, unique per (host, log, file, offset).
    pub fn key(&self) -> String {
        line_key(&self.host, &self.log, &self.file_id, self.offset)
    }
}

impl FileId {
    /// The name a file of another collector gets here: its id mixed with
    /// the collector's (FNV-1a), so that identity (collector, host, log,
    /// file, offset) stays unique in one index while every line of one
    /// file keeps one name. The same inputs always give the same id.
    pub fn of_collector(self, collector: &str) -> FileId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in collector.bytes().chain([0]).chain(self.dev.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        FileId { dev: h, ..self }
    }
}

/// The durable name of a line: what the index deduplicates on.
pub fn line_key(host: &str, log: &str, file_id: &FileId, offset: u64) -> String {
    format!("{host}/{log}/{file_id}/{offset}")
}

/// The single frame after the topic of a `parsed/<host>/<log>` message.
///
/// An event is one line, or several joined by a multiline rule; it is named
/// (durably) by its FIRST line: `host`, `log`, `file_id`, `offset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedEvent {
    /// Event time (UTC, sub-second precision kept): parsed from the line, or
    /// the time the tap read it (`raw`, or when the line has no timestamp).
    pub ts: DateTime<Utc>,
    pub host: String,
    pub log: String,
    /// The whole event text (lines joined with `\n`).
    pub body: String,
    /// What the parser extracted (`status`, `method`, `severity`, ...).
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub file_id: FileId,
    /// The remote path the first line was read from (empty in messages from
    /// before this field existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Byte offset of the event's first line.
    pub offset: u64,
    /// Byte offset just past the event's last line (its newline included):
    /// where the next line of the file starts. 0 in messages from before
    /// this field existed.
    #[serde(default)]
    pub end_offset: u64,
    /// The parser could not read the line: it is indexed as raw (ts = time
    /// read) and `fields.parse_error` says why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parse_error: bool,
    /// The collector that first read it (empty in messages from before
    /// this field existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collector: String,
    /// The collectors that rebroadcast it since (as [`LineMeta::via`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// The single frame after the topic of a `ping/<host>` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub host: String,
    /// Whether the host's SSH port accepts connections.
    pub up: bool,
    /// How long that TCP connect took, when it succeeded.
    pub rtt_ms: Option<f64>,
    /// ICMP echo round trip, when masspinger may send ICMP and the host
    /// answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_rtt_ms: Option<f64>,
    pub at: DateTime<Utc>,
}

/// What a tap reports about one followed log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LogStatus {
    pub log: String,
    pub path: String,
    /// Lines published by the current tap process.
    pub lines_read: u64,
    /// Their bytes, newlines included.
    #[serde(default)]
    pub bytes_read: u64,
    pub file_id: Option<FileId>,
    /// Offset just past the last line read.
    pub last_offset: Option<u64>,
    pub error: Option<String>,
    /// The size of the file at its path, as last seen on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_size: Option<u64>,
    /// Offset just past the last line the index has committed, in the
    /// current file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_offset: Option<u64>,
    /// Bytes on the server not yet in the index: the rest of the current
    /// file, plus what is left of older files still being finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Only on a pattern log's own row (its `path` is the pattern): how
    /// many files match it now. Each file it follows has a row of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
}

/// The single frame after the topic of a `status/<host>` message, published by
/// `ssh_tap` every second and whenever something changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapStatus {
    pub host: String,
    pub connected: bool,
    /// Why the tap is not connected, or the last connection failure.
    pub error: Option<String>,
    pub logs: Vec<LogStatus>,
    pub at: DateTime<Utc>,
    /// The host's session server, when its config has a `sessions` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionsStatus>,
    /// Lines the tap holds for the index that the parser has not
    /// confirmed yet (at most `tap.max_unacked_lines` and one read; the rest waits in
    /// the files).
    #[serde(default)]
    pub unconfirmed_lines: u64,
}

/// A host's session server as its tap last reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsStatus {
    /// Where clients send requests (as bound).
    pub endpoint: String,
    /// Sessions handed to clients and not deleted or ended.
    pub open: usize,
    /// Shells warmed up and waiting at a prompt.
    pub ready: usize,
    /// The configured cap on open sessions and pool size.
    pub max: usize,
    pub pool: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> LineMeta {
        LineMeta {
            via: Vec::new(),
            host: "web01".into(),
            log: "app".into(),
            path: "/var/log/app.log".into(),
            file_id: FileId {
                dev: 2049,
                ino: 131,
                fingerprint: 0xdeadbeef,
            },
            offset: 4096,
            seq: 7,
            lines: 1,
            epoch: "e1".into(),
            read_at: "2026-11-22T10:00:00.123Z".parse().unwrap(),
            partial: false,
            collector: "eu-1".into(),
            ndjson: false,
        }
    }

    #[test]
    fn a_message_of_several_lines_splits_into_lines_with_their_own_offsets() {
        let m = LineMeta { lines: 3, ..meta() };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""lines":3"#), "{json}");
        let back: LineMeta = serde_json::from_str(&json).unwrap();
        let got: Vec<(u64, u64, &[u8])> = back
            .split(b"ab\n\ncd")
            .map(|(m, l)| (m.offset, m.seq, l))
            .collect();
        assert_eq!(
            got,
            [
                (4096, 7, &b"ab"[..]),
                (4099, 8, &b""[..]),
                (4100, 9, &b"cd"[..])
            ]
        );
        // One line: no `lines` on the wire, and a body with a newline in it
        // (never sent so) stays one line.
        let one = serde_json::to_string(&meta()).unwrap();
        assert!(!one.contains("lines"), "{one}");
        let m: LineMeta = serde_json::from_str(&one).unwrap();
        assert_eq!(m.lines, 1);
        assert_eq!(m.split(b"a\nb").count(), 1);
    }

    #[test]
    fn file_id_round_trips_as_text() {
        let id = FileId {
            dev: 2049,
            ino: 131,
            fingerprint: 0xdeadbeef,
        };
        assert_eq!(id.to_string(), "2049:131:deadbeef");
        assert_eq!("2049:131:deadbeef".parse::<FileId>().unwrap(), id);
        assert!("2049:131".parse::<FileId>().is_err());
        assert!("a:b:c".parse::<FileId>().is_err());
    }

    #[test]
    fn line_meta_round_trips_and_omits_false_partial() {
        let m = meta();
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"file_id\":\"2049:131:deadbeef\""));
        assert!(!json.contains("partial"));
        assert_eq!(serde_json::from_str::<LineMeta>(&json).unwrap(), m);
        assert_eq!(m.key(), "web01/app/2049:131:deadbeef/4096");
    }

    #[test]
    fn a_version_one_line_meta_still_parses() {
        let old = r#"{"host":"h","log":"l","path":"/p","file_id":"1:2:0000000a","offset":0,
            "seq":0,"epoch":"x","read_at":"2026-11-22T10:00:00Z"}"#;
        let m: LineMeta = serde_json::from_str(old).unwrap();
        assert_eq!(m.file_id.fingerprint, 10);
        assert!(!m.partial);
        assert_eq!((m.collector.as_str(), m.ndjson), ("", false));
    }

    #[test]
    fn another_collectors_file_gets_a_stable_name_of_its_own() {
        let f = meta().file_id;
        let us = f.of_collector("us-1");
        assert_eq!(us, f.of_collector("us-1"));
        assert_ne!(us, f.of_collector("us-2"));
        assert_ne!(us, f);
        assert_eq!((us.ino, us.fingerprint), (f.ino, f.fingerprint));
        // "us-1" + dev 0x31... and "us-" + ... never meet: the name ends
        // before the device number.
        assert_ne!(
            FileId { dev: 1, ..f }.of_collector("a"),
            FileId { dev: 1, ..f }.of_collector("a\u{1}")
        );
    }

    #[test]
    fn parsed_event_and_ping_round_trip() {
        let e = ParsedEvent {
            via: Vec::new(),
            ts: Utc::now(),
            host: "h".into(),
            log: "l".into(),
            body: "GET /".into(),
            fields: Default::default(),
            file_id: FileId::default(),
            path: "/var/log/x".into(),
            offset: 3,
            end_offset: 9,
            parse_error: true,
            collector: "eu-1".into(),
        };
        let back: ParsedEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        // An event from before end_offset and parse_error existed.
        let old = r#"{"ts":"2026-11-22T10:00:00Z","host":"h","log":"l","body":"x","fields":{},
            "file_id":"1:2:00000003","offset":4}"#;
        let old: ParsedEvent = serde_json::from_str(old).unwrap();
        assert_eq!(
            (old.end_offset, old.parse_error, old.path.as_str()),
            (0, false, "")
        );
        let p = Ping {
            host: "h".into(),
            up: true,
            rtt_ms: Some(0.3),
            icmp_rtt_ms: None,
            at: Utc::now(),
        };
        let back: Ping = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
