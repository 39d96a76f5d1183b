//! Events received as NDJSON on the HTTP ingest endpoint: one JSON object
//! per line, its `message` (or `msg`) the event's text, its `timestamp`
//! (or `ts`) its time (RFC 3339 or epoch seconds), every other key a field.
//! The receiving side (`receive.rs`) checked each line is an object, so a
//! failure here is only a bad timestamp.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::json::{object, Json};
use super::{FormatError, Parsed};

/// The keys whose value is the text, then the time, first found first.
pub const MESSAGE_KEYS: [&str; 2] = ["message", "msg"];
pub const TIME_KEYS: [&str; 2] = ["timestamp", "ts"];

pub fn parse(line: &str, _read_at: DateTime<Utc>) -> Result<Parsed, FormatError> {
    let mut fields = object(line)?;
    let body = MESSAGE_KEYS
        .iter()
        .find_map(|k| fields.remove(*k))
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .unwrap_or_default();
    let stamp = TIME_KEYS
        .iter()
        .find_map(|k| fields.remove(*k).map(|v| (*k, v)));
    let json = Json {
        timestamp_key: None,
        timezone: chrono_tz::UTC,
    };
    let ts = match stamp {
        None | Some((_, Value::Null)) => None,
        Some((k, v)) => Some(
            json.timestamp(&v)
                .map_err(|e| FormatError::new(format!("timestamp key {k:?}: {}", e.0)))?,
        ),
    };
    Ok(Parsed {
        ts,
        fields,
        body: Some(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_the_text_ts_the_time_and_the_rest_fields() {
        let at = Utc::now();
        let p = parse(
            r#"{"msg":"disk full","ts":"2026-12-03T10:00:00Z","level":"error","disk":{"free":0}}"#,
            at,
        )
        .unwrap();
        assert_eq!(p.body.as_deref(), Some("disk full"));
        assert_eq!(p.ts.unwrap().to_rfc3339(), "2026-12-03T10:00:00+00:00");
        assert_eq!(p.fields["level"], "error");
        assert_eq!(p.fields["disk"]["free"], 0);
        assert!(!p.fields.contains_key("msg") && !p.fields.contains_key("ts"));
        // `message` wins over `msg`, which then stays a field; epoch numbers
        // are times; a message that is not a string is its JSON text.
        let p = parse(
            r#"{"message":{"a":1},"msg":"x","timestamp":1764756000}"#,
            at,
        )
        .unwrap();
        assert_eq!(p.body.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(p.fields["msg"], "x");
        assert_eq!(p.ts.unwrap().timestamp(), 1_764_756_000);
        // No message: an empty text, the fields searchable.
        let p = parse(r#"{"user":"ann"}"#, at).unwrap();
        assert_eq!((p.body.as_deref(), p.ts), (Some(""), None));
        let e = parse(r#"{"msg":"x","ts":"yesterday"}"#, at).unwrap_err();
        assert!(e.0.starts_with("timestamp key \"ts\""), "{e}");
    }
}
