//! From lines to events: each log's format and multiline rule, applied to
//! what arrives on the ingest socket.
//!
//! ```text
//! push(LineMeta, bytes) -> [multiline: pending per file] -> format.parse(first line)
//!                       -> ParsedEvent (ts, body = whole text, fields, offset, end_offset)
//! flush_idle(now)       -> pending events idle for flush_after
//! flush_all()           -> everything pending (shutdown)
//! ```
//! A line the format cannot read becomes a raw event with `parse_error` set
//! and the reason in `fields.parse_error`; nothing is dropped.

use std::collections::HashMap;
use std::time::Instant;

use rill_config::Config;
use rill_proto::{FileId, LineMeta, ParsedEvent};
use tracing::debug;

use crate::formats::{FormatError, LineFormat};
use crate::multiline::{next_offset, Joiner, Pending};

/// How one log's lines become events.
#[derive(Debug, Clone)]
pub struct LogRules {
    pub format: LineFormat,
    pub joiner: Option<Joiner>,
}

/// Every log's rules, and the multiline events still open.
pub struct EventBuilder {
    logs: HashMap<String, LogRules>,
    raw: LogRules,
    pending: HashMap<(String, String, FileId), Pending>,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("log {log}: {message}")]
    Invalid { log: String, message: String },
}

impl EventBuilder {
    /// Compiles every log's parser and multiline rule.
    pub fn new(cfg: &Config) -> Result<EventBuilder, RulesError> {
        let mut logs = HashMap::new();
        for (name, log) in &cfg.logs {
            let invalid = |message: String| RulesError::Invalid {
                log: name.clone(),
                message,
            };
            let format = LineFormat::new(&log.parser).map_err(|e| invalid(e.0))?;
            let joiner = log
                .multiline
                .as_ref()
                .map(Joiner::new)
                .transpose()
                .map_err(|e| invalid(e.to_string()))?;
            logs.insert(name.clone(), LogRules { format, joiner });
        }
        Ok(EventBuilder::with_rules(logs))
    }

    /// For tests and the benchmark: explicit rules per log name.
    pub fn with_rules(logs: HashMap<String, LogRules>) -> EventBuilder {
        EventBuilder {
            logs,
            raw: LogRules {
                format: LineFormat::Raw,
                joiner: None,
            },
            pending: HashMap::new(),
        }
    }

    /// One line in; the events it completes out (none while a multiline
    /// event is still open).
    pub fn push(&mut self, meta: LineMeta, bytes: &[u8], out: &mut Vec<ParsedEvent>) {
        let now = Instant::now();
        let raw_len = bytes.len();
        let line = String::from_utf8_lossy(bytes).into_owned();
        if meta.ndjson {
            let end = next_offset(&meta, raw_len);
            let first_len = line.len();
            out.push(event(&LineFormat::Ingested, meta, line, first_len, end));
            return;
        }
        let rules = self.logs.get(&meta.log).unwrap_or(&self.raw);
        let Some(joiner) = &rules.joiner else {
            let end = next_offset(&meta, raw_len);
            let first_len = line.len();
            out.push(event(&rules.format, meta, line, first_len, end));
            return;
        };
        let key = (meta.host.clone(), meta.log.clone(), meta.file_id);
        if let Some(p) = self.pending.get_mut(&key) {
            if p.accepts(joiner, &meta, &line) {
                p.append(&meta, &line, raw_len, now);
                if p.is_full(joiner) {
                    let p = self.pending.remove(&key).expect("present");
                    out.push(complete(&rules.format, p));
                }
                return;
            }
            let p = self.pending.remove(&key).expect("present");
            out.push(complete(&rules.format, p));
        }
        // Another file of the same log (rotation): what was open there is
        // complete. Only the same collector's: two collectors' hosts of one
        // name write their files side by side on a hub.
        let stale: Vec<_> = self
            .pending
            .iter()
            .filter(|((h, l, _), p)| {
                *h == key.0 && *l == key.1 && p.first.collector == meta.collector
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            let p = self.pending.remove(&k).unwrap();
            out.push(complete(&rules.format, p));
        }
        self.pending
            .insert(key, Pending::new(meta, line, raw_len, now));
    }

    /// Completes multiline events that got no line for their `flush_after`.
    pub fn flush_idle(&mut self, now: Instant, out: &mut Vec<ParsedEvent>) {
        let logs = &self.logs;
        let raw = &self.raw;
        let idle: Vec<_> = self
            .pending
            .iter()
            .filter(|(k, p)| {
                let rules = logs.get(&k.1).unwrap_or(raw);
                rules.joiner.as_ref().is_none_or(|j| p.is_idle(j, now))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            let p = self.pending.remove(&k).unwrap();
            let rules = self.logs.get(&k.1).unwrap_or(&self.raw);
            out.push(complete(&rules.format, p));
        }
    }

    /// Completes every open event (shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<ParsedEvent>) {
        for (k, p) in self.pending.drain() {
            let rules = self.logs.get(&k.1).unwrap_or(&self.raw);
            out.push(complete(&rules.format, p));
        }
    }

    /// Multiline events not complete yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The lowest `seq` of a line still held in an open multiline event:
    /// it is not indexed yet. (The parser sets a line's `seq` to the
    /// write-ahead log position of its record before pushing it here.)
    pub fn first_pending_seq_any(&self) -> Option<u64> {
        self.pending.values().map(|p| p.first.seq).min()
    }
}

fn complete(format: &LineFormat, p: Pending) -> ParsedEvent {
    event(format, p.first, p.text, p.first_len, p.end_offset)
}

/// Parses the first line of `body` (its first `first_len` bytes) with
/// `format`; on failure the event is raw, flagged.
fn event(
    format: &LineFormat,
    meta: LineMeta,
    body: String,
    first_len: usize,
    end_offset: u64,
) -> ParsedEvent {
    let mut body = body;
    let (ts, fields, parse_error) = match format.parse(&body[..first_len], meta.read_at) {
        Ok(p) => {
            if let Some(text) = p.body {
                body = text;
            }
            (p.ts.unwrap_or(meta.read_at), p.fields, false)
        }
        Err(FormatError(reason)) => {
            debug!(host = %meta.host, log = %meta.log, offset = meta.offset, %reason, "line indexed as raw");
            let mut fields = serde_json::Map::new();
            fields.insert("parse_error".into(), reason.into());
            (meta.read_at, fields, true)
        }
    };
    ParsedEvent {
        ts,
        host: meta.host,
        log: meta.log,
        body,
        fields,
        file_id: meta.file_id,
        path: meta.path,
        offset: meta.offset,
        end_offset,
        parse_error,
        collector: meta.collector,
        via: meta.via,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_config::{Multiline, MultilineRule, ParserSpec, RegexTimestamp};
    use std::time::Duration;

    fn meta(log: &str, offset: u64) -> LineMeta {
        serde_json::from_value(serde_json::json!({
            "host": "web01", "log": log, "path": "/p", "file_id": "1:2:00000003",
            "offset": offset, "seq": 0, "epoch": "e", "read_at": "2026-11-22T12:00:00.5Z"
        }))
        .unwrap()
    }

    fn builder() -> EventBuilder {
        let app = ParserSpec::Regex {
            pattern: r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) (?P<level>[A-Z]+) (?P<message>.*)".into(),
            timestamp: Some(RegexTimestamp {
                capture: "ts".into(),
                format: "%Y-%m-%d %H:%M:%S%.3f".into(),
                timezone: chrono_tz::UTC,
            }),
        };
        let mut logs = HashMap::new();
        logs.insert(
            "app".to_owned(),
            LogRules {
                format: LineFormat::new(&app).unwrap(),
                joiner: Some(
                    Joiner::new(&Multiline {
                        rule: MultilineRule::Continues(r"^(\s|Caused by)".into()),
                        flush_after: Duration::from_millis(200),
                        max_lines: 100,
                    })
                    .unwrap(),
                ),
            },
        );
        logs.insert(
            "access".to_owned(),
            LogRules {
                format: LineFormat::new(&ParserSpec::Combined).unwrap(),
                joiner: None,
            },
        );
        EventBuilder::with_rules(logs)
    }

    /// Feeds `text` as a file from offset 0, line by line.
    fn feed(b: &mut EventBuilder, log: &str, text: &str, out: &mut Vec<ParsedEvent>) {
        let mut off = 0;
        for l in text.lines() {
            b.push(meta(log, off), l.as_bytes(), out);
            off += l.len() as u64 + 1;
        }
    }

    #[test]
    fn two_collectors_lines_of_one_host_and_log_do_not_cut_each_others_events() {
        let mut b = builder();
        let mut out = Vec::new();
        let line = |collector: &str, ino: u64, offset: u64| {
            let mut m = meta("app", offset);
            m.collector = collector.into();
            m.file_id.ino = ino;
            m
        };
        let head = "2026-11-22 10:00:00.123 ERROR request failed";
        b.push(line("eu-1", 1, 0), head.as_bytes(), &mut out);
        b.push(line("us-1", 2, 0), head.as_bytes(), &mut out);
        b.push(line("eu-1", 1, 45), b"  at a.B(C.java:1)", &mut out);
        b.push(line("us-1", 2, 45), b"  at x.Y(Z.java:2)", &mut out);
        assert!(out.is_empty(), "nothing complete yet: {out:?}");
        b.flush_all(&mut out);
        let mut bodies: Vec<&str> = out.iter().map(|e| e.body.as_str()).collect();
        bodies.sort_unstable();
        assert_eq!(
            bodies,
            [
                format!("{head}\n  at a.B(C.java:1)"),
                format!("{head}\n  at x.Y(Z.java:2)")
            ]
        );
    }

    #[test]
    fn a_java_stack_trace_is_one_event_named_by_its_first_line() {
        let log = "2026-11-22 10:00:00.123 ERROR request failed\n\
java.lang.IllegalStateException: order 42 in state SHIPPED\n\
\tat com.example.OrderService.cancel(OrderService.java:88)\n\
\tat com.example.Api.handle(Api.java:12)\n\
Caused by: java.sql.SQLTransientConnectionException: pool exhausted\n\
\t... 12 more\n\
2026-11-22 10:00:01.000 INFO recovered\n";
        let mut b = builder();
        let mut out = Vec::new();
        feed(&mut b, "app", log, &mut out);
        // "java.lang..." does not match the continue rule: with a `continues`
        // rule, the exception line is its own event, its `at` lines join it.
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0].body, "2026-11-22 10:00:00.123 ERROR request failed");
        assert_eq!(
            out[0].ts,
            "2026-11-22T10:00:00.123Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        assert_eq!(out[0].fields["level"], "ERROR");
        assert!(!out[0].parse_error);
        let trace = &out[1];
        assert!(trace.body.starts_with("java.lang.IllegalStateException"));
        assert!(trace.body.ends_with("\t... 12 more"));
        assert_eq!(trace.body.lines().count(), 5);
        assert!(
            trace.parse_error,
            "a trace without a header line does not match the pattern"
        );
        assert_eq!(trace.offset, 45);
        let last_start = log.find("2026-11-22 10:00:01").unwrap() as u64;
        assert_eq!(trace.end_offset, last_start);
        // The last record is pending until idle.
        assert_eq!(b.pending(), 1);
        assert_eq!(
            b.first_pending_seq_any(),
            Some(0),
            "the open event holds seq 0 (test metas)"
        );
        b.flush_idle(Instant::now(), &mut out);
        assert_eq!(out.len(), 2, "not idle yet");
        b.flush_idle(Instant::now() + Duration::from_millis(250), &mut out);
        assert_eq!(out[2].body, "2026-11-22 10:00:01.000 INFO recovered");
        assert_eq!(out[2].end_offset, log.len() as u64);
    }

    #[test]
    fn header_and_trace_join_when_the_trace_is_indented() {
        let log = concat!(
            "2026-11-22 10:00:00.123 ERROR boom: java.lang.NullPointerException\n",
            "    at com.example.A.b(A.java:1)\n",
            "    at com.example.Main.main(Main.java:5)\n"
        );
        let mut b = builder();
        let mut out = Vec::new();
        feed(&mut b, "app", log, &mut out);
        b.flush_all(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 0);
        assert_eq!(out[0].end_offset, log.len() as u64);
        assert_eq!(
            out[0].fields["message"],
            "boom: java.lang.NullPointerException"
        );
        assert!(out[0].body.contains("Main.java:5"));
    }

    #[test]
    fn broken_lines_are_indexed_raw_with_the_reason() {
        let mut b = builder();
        let mut out = Vec::new();
        feed(
            &mut b,
            "access",
            "10.0.0.1 - - [22/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n\
             garbage that is not an access log line\n",
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].fields["status"], 200);
        assert!(!out[0].parse_error);
        assert!(out[1].parse_error);
        assert_eq!(out[1].body, "garbage that is not an access log line");
        assert_eq!(out[1].ts.to_rfc3339(), "2026-11-22T12:00:00.500+00:00");
        assert!(out[1].fields["parse_error"]
            .as_str()
            .unwrap()
            .contains("expected"));
        assert_eq!(out[1].offset, 76);
        // Unknown logs (e.g. after a config change) are raw.
        b.push(meta("other", 0), b"caf\xc3\xa9 \xff", &mut out);
        assert_eq!(out[2].body, "café \u{fffd}");
        assert_eq!(out[2].end_offset, 8, "7 raw bytes and the newline");
        assert!(!out[2].parse_error);
    }
}
