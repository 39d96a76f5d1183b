//! JSON lines: every key of the object becomes a field (nested objects stay
//! nested: `fields.http.status`); the timestamp comes from one key.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::{time, FormatError, Parsed};

/// Tried in this order when no `timestamp_key` is configured.
pub const DEFAULT_TIMESTAMP_KEYS: [&str; 4] = ["@timestamp", "timestamp", "time", "ts"];

#[derive(Debug, Clone)]
pub struct Json {
    pub timestamp_key: Option<String>,
    /// For stamps without an offset.
    pub timezone: Tz,
}

impl Json {
    pub fn parse(&self, line: &str, _read_at: DateTime<Utc>) -> Result<Parsed, FormatError> {
        let fields = object(line)?;
        let value = match &self.timestamp_key {
            Some(k) => fields.get(k).map(|v| (k.as_str(), v)),
            None => DEFAULT_TIMESTAMP_KEYS
                .iter()
                .find_map(|k| fields.get(*k).map(|v| (*k, v))),
        };
        let ts = match value {
            None | Some((_, Value::Null)) => None,
            Some((k, v)) => Some(
                self.timestamp(v)
                    .map_err(|e| FormatError::new(format!("timestamp key {k:?}: {}", e.0)))?,
            ),
        };
        Ok(Parsed {
            ts,
            fields,
            body: None,
        })
    }

    pub(crate) fn timestamp(&self, v: &Value) -> Result<DateTime<Utc>, FormatError> {
        match v {
            Value::String(s) => match s.parse::<f64>() {
                Ok(n) => time::epoch(n),
                Err(_) => time::iso(s, self.timezone),
            },
            Value::Number(n) => time::epoch(n.as_f64().unwrap_or(f64::NAN)),
            other => Err(FormatError::new(format!(
                "expected an RFC 3339 string or epoch number, got {}",
                kind(other)
            ))),
        }
    }
}

/// `line` as a JSON object, or why it is not one.
pub(crate) fn object(line: &str) -> Result<Map<String, Value>, FormatError> {
    match serde_json::from_str(line.trim_end()) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(FormatError::new(format!(
            "expected a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(FormatError::new(format!("expected a JSON object: {e}"))),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn json(key: Option<&str>) -> Json {
        Json {
            timestamp_key: key.map(str::to_owned),
            timezone: chrono_tz::UTC,
        }
    }

    #[test]
    fn structured_logger_lines() {
        // logrus / zap / bunyan / ECS style.
        let now = utc("2026-11-22T12:00:00Z");
        let p = json(None)
            .parse(
                r#"{"level":"error","ts":1795341600.123456,"caller":"api/handler.go:42","msg":"upstream timeout","status":504,"http":{"method":"GET","path":"/api/v1/users"}}"#,
                now,
            )
            .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T10:00:00.123456Z")));
        assert_eq!(p.fields["status"], 504);
        assert_eq!(p.fields["http"]["method"], "GET");
        let p = json(None)
            .parse(
                r#"{"@timestamp":"2026-11-22T10:00:00.5Z","message":"x"}"#,
                now,
            )
            .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T10:00:00.5Z")));
        let p = json(Some("when"))
            .parse(r#"{"when":"1795341600500","time":"ignored"}"#, now)
            .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T10:00:00.5Z")));
    }

    #[test]
    fn zone_less_and_missing_timestamps() {
        let j = Json {
            timestamp_key: Some("time".into()),
            timezone: chrono_tz::America::New_York,
        };
        let now = utc("2026-11-22T12:00:00Z");
        let p = j
            .parse(r#"{"time":"2026-11-22 05:00:00.25"}"#, now)
            .unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T10:00:00.25Z")));
        let p = j.parse(r#"{"msg":"no time here"}"#, now).unwrap();
        assert_eq!(p.ts, None, "the event takes the time it was read");
    }

    #[test]
    fn broken_lines_say_what_was_expected() {
        let now = utc("2026-11-22T12:00:00Z");
        for (line, expected) in [
            (
                r#"{"level":"info","msg":"cut off"#,
                "expected a JSON object: EOF",
            ),
            ("[1,2]", "expected a JSON object, got an array"),
            ("plain text", "expected a JSON object"),
            (
                r#"{"ts":"last tuesday"}"#,
                "timestamp key \"ts\": expected an RFC 3339",
            ),
            (
                r#"{"ts":true}"#,
                "expected an RFC 3339 string or epoch number, got a boolean",
            ),
        ] {
            let e = json(None).parse(line, now).unwrap_err();
            assert!(e.0.contains(expected), "{line}: {e}");
        }
    }
}
