//! `parser: {type: regex, pattern: ..., timestamp: {capture, format, timezone}}`:
//! every named capture that matched becomes a string field.

use chrono::{DateTime, Utc};
use regex::Regex;
use rill_config::RegexTimestamp;
use serde_json::Map;

use super::{time, FormatError, Parsed};

#[derive(Debug, Clone)]
pub struct Pattern {
    re: Regex,
    timestamp: Option<RegexTimestamp>,
}

impl Pattern {
    pub fn new(pattern: &str, timestamp: Option<RegexTimestamp>) -> Result<Self, FormatError> {
        let re = Regex::new(pattern)
            .map_err(|e| FormatError::new(format!("invalid regex {pattern:?}: {e}")))?;
        Ok(Pattern { re, timestamp })
    }

    pub fn parse(&self, line: &str, read_at: DateTime<Utc>) -> Result<Parsed, FormatError> {
        let caps = self.re.captures(line).ok_or_else(|| {
            FormatError::new(format!("expected a line matching {:?}", self.re.as_str()))
        })?;
        let mut fields = Map::new();
        for name in self.re.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                fields.insert(name.into(), m.as_str().into());
            }
        }
        let ts = match &self.timestamp {
            None => None,
            Some(t) => match caps.name(&t.capture) {
                None => None,
                Some(m) => Some(
                    time::with_format(m.as_str(), &t.format, t.timezone, read_at).map_err(|e| {
                        FormatError::new(format!("capture {:?}: {}", t.capture, e.0))
                    })?,
                ),
            },
        };
        Ok(Parsed {
            ts,
            fields,
            body: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn log4j() -> Pattern {
        Pattern::new(
            r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) (?P<level>[A-Z]+) +\[(?P<thread>[^\]]+)\] (?P<logger>\S+) - (?P<message>.*)",
            Some(RegexTimestamp {
                capture: "ts".into(),
                format: "%Y-%m-%d %H:%M:%S,%3f".into(),
                timezone: chrono_tz::Europe::Berlin,
            }),
        )
        .unwrap()
    }

    #[test]
    fn log4j_line_with_zone_less_millisecond_stamp() {
        let p = log4j()
            .parse(
                "2026-11-22 11:00:00,250 ERROR [http-nio-8080-exec-3] com.example.OrderService - order 42 failed",
                utc("2026-11-22T12:00:00Z"),
            )
            .unwrap();
        assert_eq!(
            p.ts,
            Some(utc("2026-11-22T10:00:00.250Z")),
            "Berlin is UTC+1 in November"
        );
        assert_eq!(p.fields["level"], "ERROR");
        assert_eq!(p.fields["thread"], "http-nio-8080-exec-3");
        assert_eq!(p.fields["message"], "order 42 failed");
    }

    #[test]
    fn optional_captures_and_stamps_with_offset() {
        let p = Pattern::new(
            r"^\[(?P<ts>[^\]]+)\] (?P<level>\w+)(?: pid=(?P<pid>\d+))? (?P<msg>.*)$",
            Some(RegexTimestamp {
                capture: "ts".into(),
                format: "%d/%b/%Y:%H:%M:%S%.f %z".into(),
                timezone: chrono_tz::UTC,
            }),
        )
        .unwrap();
        let p = p
            .parse(
                "[22/Nov/2026:10:00:00.123456 -0500] warn disk almost full",
                utc("2026-11-22T16:00:00Z"),
            )
            .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T15:00:00.123456Z")));
        assert!(
            p.fields.get("pid").is_none(),
            "a capture that did not match is left out"
        );
        assert_eq!(p.fields["msg"], "disk almost full");
    }

    #[test]
    fn broken_lines_say_what_was_expected() {
        let now = utc("2026-11-22T12:00:00Z");
        let e = log4j()
            .parse("\tat com.example.Main.main(Main.java:5)", now)
            .unwrap_err();
        assert!(
            e.0.starts_with("expected a line matching \"^(?P<ts>"),
            "{e}"
        );
        let e = log4j()
            .parse("2026-13-45 11:00:00,250 INFO [main] x - y", now)
            .unwrap_err();
        assert!(e.0.contains("capture \"ts\": expected a time like"), "{e}");
    }
}
