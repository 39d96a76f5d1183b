//! A request body to events: plain lines, NDJSON objects, or an S3-style
//! event notification (`{"Records": [...]}`, one event per record). All of
//! it is checked before anything is stored: a bad line refuses the whole
//! request, naming the line.

use chrono::{DateTime, Utc};
use rill_proto::{FileId, LineMeta};
use serde_json::{Map, Value};

/// How the body is written, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `text/plain` (or none): each line an event, its text as written.
    Lines,
    /// `application/x-ndjson` (or `application/jsonl`): a JSON object per line.
    Ndjson,
    /// `application/json`: an S3-style notification, `{"Records": [...]}`.
    Records,
}

impl Kind {
    /// The kind for a `Content-Type` header value, or why it is refused.
    pub fn of(content_type: Option<&str>) -> Result<Kind, String> {
        let Some(ct) = content_type else {
            return Ok(Kind::Lines);
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | "text/plain" | "application/octet-stream" => Ok(Kind::Lines),
            "application/x-ndjson" | "application/jsonl" | "application/ndjson" => Ok(Kind::Ndjson),
            "application/json" => Ok(Kind::Records),
            _ => Err(format!(
                "expected Content-Type text/plain, application/x-ndjson or application/json \
                 (S3-style {{\"Records\": [...]}}), got {ct:?}"
            )),
        }
    }
}

/// The events of one body, each as the bytes a line carries (NDJSON and
/// records as compact JSON objects).
#[derive(Debug, PartialEq)]
pub struct Events {
    pub lines: Vec<Vec<u8>>,
    /// Whether the lines are JSON objects (read by the `ingested` format).
    pub ndjson: bool,
}

/// The largest S3-style notification body.
const MAX_RECORDS_BODY: usize = 4 << 20;
/// Nesting deeper than this in one NDJSON object or record is refused.
const MAX_DEPTH: usize = 64;

/// Events in one request at most (each costs a little memory beside its
/// bytes; a body of empty-ish lines must not cost gigabytes).
pub const MAX_EVENTS: usize = 200_000;

pub fn decode(kind: Kind, body: &[u8]) -> Result<Events, String> {
    let too_many =
        || format!("expected at most {MAX_EVENTS} events in one request; send fewer per request");
    let events = match kind {
        Kind::Lines => {
            let mut lines = Vec::new();
            for line in split(body) {
                if lines.len() == MAX_EVENTS {
                    return Err(too_many());
                }
                lines.push(line.to_vec());
            }
            Events {
                lines,
                ndjson: false,
            }
        }
        Kind::Ndjson => {
            let mut lines = Vec::new();
            for (i, line) in split_numbered(body) {
                if lines.len() == MAX_EVENTS {
                    return Err(too_many());
                }
                let v = object(line).map_err(|e| format!("line {i}: {e}"))?;
                lines.push(serde_json::to_vec(&v).expect("a JSON value serialises"));
            }
            Events {
                lines,
                ndjson: true,
            }
        }
        Kind::Records => Events {
            lines: records(body)?,
            ndjson: true,
        },
    };
    if events.lines.is_empty() {
        return Err("expected at least one event, got an empty body".into());
    }
    Ok(events)
}

/// The body's lines without their `\n` (or `\r\n`), blank lines left out.
fn split(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_numbered(body).map(|(_, l)| l)
}

/// Like [`split`], with each line's number (from 1).
fn split_numbered(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}

/// One NDJSON line: a JSON object, not nested too deep.
fn object(line: &[u8]) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("expected a JSON object: {e}"))?;
    if depth(&value) > MAX_DEPTH {
        return Err(format!("expected at most {MAX_DEPTH} levels of nesting"));
    }
    match value {
        Value::Object(m) => Ok(m),
        other => Err(format!(
            "expected a JSON object, got {}",
            crate::formats::json::kind(&other)
        )),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// An S3-style notification: each record an event whose text is
/// `<eventName> s3://<bucket>/<key>`, whose time is its `eventTime`, and
/// whose fields are the record's keys.
fn records(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    // Read whole as JSON values, a body costs many times its size: kept
    // small (notifications carry a few records).
    if body.len() > MAX_RECORDS_BODY {
        return Err(format!(
            "expected an S3-style notification of at most {} MiB, got {} bytes; send events as NDJSON",
            MAX_RECORDS_BODY >> 20,
            body.len()
        ));
    }
    let doc = object(body).map_err(|e| format!("the body: {e}"))?;
    let Some(Value::Array(records)) = doc.get("Records") else {
        return Err(
            "expected an S3-style event notification {\"Records\": [...]} (NDJSON needs \
             Content-Type application/x-ndjson)"
                .into(),
        );
    };
    if records.len() > MAX_EVENTS {
        return Err(format!(
            "expected at most {MAX_EVENTS} records in one request, got {}",
            records.len()
        ));
    }
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let Value::Object(r) = r else {
            return Err(format!("Records[{i}]: expected an object"));
        };
        let mut ev = r.clone();
        let s = |path: &[&str]| {
            let mut v = Value::Object(r.clone());
            for p in path {
                v = v.get(p)?.clone();
            }
            v.as_str().map(str::to_owned)
        };
        let name = s(&["eventName"]).unwrap_or_else(|| "event".into());
        let text = match (s(&["s3", "bucket", "name"]), s(&["s3", "object", "key"])) {
            (Some(b), Some(k)) => format!("{name} s3://{b}/{k}"),
            _ => name,
        };
        ev.insert("message".into(), Value::String(text));
        if let Some(t) = ev.remove("eventTime") {
            ev.insert("timestamp".into(), t);
        }
        out.push(serde_json::to_vec(&ev).expect("a JSON value serialises"));
    }
    Ok(out)
}

/// Lines per stored record at most (a tap's messages are 96-128 KiB).
const RECORD_BYTES: usize = 128 * 1024;

/// The file one request's events are named by: the same for every retry
/// of a request with the same `Idempotency-Key` from the same source to
/// the same log (so the index holds its events once), else new.
pub fn file_id(source: &str, log: &str, key: Option<(&str, &[u8; 32])>) -> FileId {
    match key {
        Some((k, digest)) => {
            // The body's digest is part of the name: a key reused for
            // another body names other events, never replacing the first.
            let h = |salt: u8| {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in [salt]
                    .into_iter()
                    .chain(source.bytes())
                    .chain([0])
                    .chain(log.bytes())
                    .chain([0])
                    .chain(k.bytes())
                    .chain([0])
                    .chain(digest.iter().copied())
                {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
                h
            };
            FileId {
                dev: h(1),
                ino: h(2),
                fingerprint: 0,
            }
        }
        None => {
            let u = uuid::Uuid::new_v4().as_u64_pair();
            FileId {
                dev: u.0,
                ino: u.1,
                fingerprint: 0,
            }
        }
    }
}

/// What names the events of one request.
pub struct Origin<'a> {
    pub source: &'a str,
    pub log: &'a str,
    pub collector: &'a str,
    pub file_id: FileId,
    pub read_at: DateTime<Utc>,
}

/// The events as records for the write-ahead log: `(meta JSON, lines)`,
/// consecutive lines joined by `\n` up to [`RECORD_BYTES`], numbered as one
/// file from offset 0 (line k+1 one byte after line k ends).
pub fn to_records(events: &Events, o: &Origin) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut k = 0;
    while k < events.lines.len() {
        let first = offset;
        let mut joined = Vec::new();
        let mut n = 0u64;
        while k < events.lines.len()
            && (n == 0 || joined.len() + 1 + events.lines[k].len() <= RECORD_BYTES)
        {
            if n > 0 {
                joined.push(b'\n');
            }
            joined.extend_from_slice(&events.lines[k]);
            offset += events.lines[k].len() as u64 + 1;
            n += 1;
            k += 1;
        }
        let meta = LineMeta {
            host: o.source.to_owned(),
            log: o.log.to_owned(),
            path: String::new(),
            file_id: o.file_id,
            offset: first,
            seq: 0,
            lines: n,
            epoch: "ingest".into(),
            read_at: o.read_at,
            partial: false,
            collector: o.collector.to_owned(),
            ndjson: events.ndjson,
            via: Vec::new(),
        };
        out.push((
            serde_json::to_vec(&meta).expect("line meta serialises"),
            joined,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(Kind::of(None), Ok(Kind::Lines));
        assert_eq!(Kind::of(Some("text/plain; charset=utf-8")), Ok(Kind::Lines));
        assert_eq!(Kind::of(Some("application/x-ndjson")), Ok(Kind::Ndjson));
        assert_eq!(Kind::of(Some("Application/JSON")), Ok(Kind::Records));
        assert!(Kind::of(Some("image/png"))
            .unwrap_err()
            .contains("image/png"));
    }

    #[test]
    fn plain_lines_skip_blanks_and_carriage_returns() {
        let e = decode(Kind::Lines, b"a\r\n\n  \nb c\n").unwrap();
        assert_eq!(e.lines, vec![b"a".to_vec(), b"b c".to_vec()]);
        assert!(!e.ndjson);
        assert!(decode(Kind::Lines, b"\n\n").unwrap_err().contains("empty"));
    }

    #[test]
    fn bad_ndjson_names_its_line_and_nothing_is_taken() {
        let e = decode(Kind::Ndjson, b"{\"msg\":\"a\"}\n\n{\"msg\":\n").unwrap_err();
        assert!(e.starts_with("line 3: expected a JSON object"), "{e}");
        let e = decode(Kind::Ndjson, b"{}\n[1]\n").unwrap_err();
        assert_eq!(e, "line 2: expected a JSON object, got an array");
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(100),
            "1".to_owned() + &"}".repeat(100)
        );
        let e = decode(Kind::Ndjson, deep.as_bytes()).unwrap_err();
        assert!(e.contains("nesting") || e.contains("recursion"), "{e}");
        let ok = decode(Kind::Ndjson, b"{\"msg\": \"a\",  \"n\": 1}\n").unwrap();
        assert_eq!(ok.lines, vec![br#"{"msg":"a","n":1}"#.to_vec()]);
    }

    #[test]
    fn a_body_of_too_many_events_is_refused() {
        let body = "x\n".repeat(MAX_EVENTS + 1);
        let e = decode(Kind::Lines, body.as_bytes()).unwrap_err();
        assert!(e.starts_with("expected at most 200000 events"), "{e}");
        assert!(decode(Kind::Lines, "x\n".repeat(MAX_EVENTS).as_bytes()).is_ok());
        let body = "{}\n".repeat(MAX_EVENTS + 1);
        assert!(decode(Kind::Ndjson, body.as_bytes()).is_err());
    }

    #[test]
    fn s3_records_are_one_event_each() {
        let body = br#"{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"2026-12-03T10:00:00Z",
            "s3":{"bucket":{"name":"b"},"object":{"key":"x/y.txt","size":5}}},{"eventName":"ObjectRemoved:Delete"}]}"#;
        let e = decode(Kind::Records, body).unwrap();
        assert_eq!(e.lines.len(), 2);
        let first: Value = serde_json::from_slice(&e.lines[0]).unwrap();
        assert_eq!(first["message"], "ObjectCreated:Put s3://b/x/y.txt");
        assert_eq!(first["timestamp"], "2026-12-03T10:00:00Z");
        assert_eq!(first["s3"]["object"]["size"], 5);
        assert!(decode(Kind::Records, b"{\"msg\":1}")
            .unwrap_err()
            .contains("Records"));
        assert!(decode(Kind::Records, b"{\"Records\":[1]}")
            .unwrap_err()
            .contains("Records[0]"));
        let big = format!("{{\"Records\":[{}0]}}", "0,".repeat(3 << 20));
        assert!(decode(Kind::Records, big.as_bytes())
            .unwrap_err()
            .contains("at most 4 MiB"));
    }

    #[test]
    fn a_retried_request_names_its_events_as_before() {
        let (d, e) = ([1u8; 32], [2u8; 32]);
        let a = file_id("web01", "app", Some(("k-1", &d)));
        assert_eq!(a, file_id("web01", "app", Some(("k-1", &d))));
        assert_ne!(a, file_id("web02", "app", Some(("k-1", &d))));
        assert_ne!(a, file_id("web01", "app", Some(("k-2", &d))));
        assert_ne!(
            a,
            file_id("web01", "app", Some(("k-1", &e))),
            "another body"
        );
        assert_ne!(file_id("web01", "app", None), file_id("web01", "app", None));
        let events = Events {
            lines: vec![vec![b'x'; 100_000], b"y".to_vec(), vec![b'z'; 100_000]],
            ndjson: false,
        };
        let o = Origin {
            source: "web01",
            log: "app",
            collector: "eu-1",
            file_id: a,
            read_at: Utc::now(),
        };
        let recs = to_records(&events, &o);
        let metas: Vec<LineMeta> = recs
            .iter()
            .map(|(m, _)| serde_json::from_slice(m).unwrap())
            .collect();
        assert_eq!(
            metas
                .iter()
                .map(|m| (m.offset, m.lines))
                .collect::<Vec<_>>(),
            vec![(0, 2), (100_003, 1)]
        );
        assert_eq!(recs[0].1.len(), 100_002);
        let split: Vec<_> = metas[0]
            .split(&recs[0].1)
            .map(|(m, l)| (m.offset, l.len()))
            .collect();
        assert_eq!(split, vec![(0, 100_000), (100_001, 1)]);
    }
}
