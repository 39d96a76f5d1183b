//! systemd journal entries, one JSON object per line as `journalctl -o json`
//! prints them (`logs.<name>.journal`): `MESSAGE` is the event's text, the
//! entry's other fields are its fields (`fields._SYSTEMD_UNIT`,
//! `fields.PRIORITY`), `__REALTIME_TIMESTAMP` its time. The journal's own
//! bookkeeping (`__CURSOR`, `__MONOTONIC_TIMESTAMP`, `__SEQNUM`...) is left
//! out: the cursor is the line's identity already.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{FormatError, Parsed};

/// Reads one entry.
pub fn parse(line: &str) -> Result<Parsed, FormatError> {
    let mut entry: Map<String, Value> = match serde_json::from_str(line.trim_end()) {
        Ok(Value::Object(m)) => m,
        Ok(_) | Err(_) => return Err(FormatError::new("expected a journal entry (a JSON object)")),
    };
    let ts = match entry.get("__REALTIME_TIMESTAMP") {
        Some(Value::String(us)) => {
            let us: i64 = us.parse().map_err(|_| {
                FormatError::new(format!("__REALTIME_TIMESTAMP {us:?} is not a number"))
            })?;
            Some(DateTime::<Utc>::from_timestamp_micros(us).ok_or_else(|| {
                FormatError::new(format!("__REALTIME_TIMESTAMP {us} is out of range"))
            })?)
        }
        _ => None,
    };
    let body = entry.remove("MESSAGE").map(|m| text(&m));
    entry.retain(|k, _| !k.starts_with("__"));
    Ok(Parsed {
        ts,
        fields: entry,
        body,
    })
}

/// A field's text: a string as it is; bytes that are not UTF-8 (journalctl
/// prints them as an array of numbers) decoded lossily.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(bytes) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_text_and_the_rest_are_fields() {
        let p = parse(r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1796290253493697","__MONOTONIC_TIMESTAMP":"1000","MESSAGE":"hello 0","PRIORITY":"6","_SYSTEMD_UNIT":"nginx.service"}"#).unwrap();
        assert_eq!(p.body.as_deref(), Some("hello 0"));
        assert_eq!(p.ts.unwrap().timestamp_micros(), 1_796_290_253_493_697);
        let keys: Vec<&String> = p.fields.keys().collect();
        assert_eq!(keys, ["PRIORITY", "_SYSTEMD_UNIT"]);
    }

    #[test]
    fn binary_messages_and_bad_entries() {
        let p = parse(r#"{"MESSAGE":[104,105,255]}"#).unwrap();
        assert_eq!(p.body.as_deref(), Some("hi\u{fffd}"));
        assert!(p.ts.is_none());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"__REALTIME_TIMESTAMP":"99999999999999999999"}"#).is_err());
        assert!(parse(r#"{"__REALTIME_TIMESTAMP":"9223372036854775807"}"#).is_err());
    }
}
