//! Strict checking of a request as it arrives: [`SessionRequest::parse`]
//! turns the bytes into a [`SessionRequest`] or a [`Rejected`] whose reason a
//! person can read.

use std::fmt;

use serde_json::{Map, Value};

use super::datetime::parse_datetime;
use super::request::{SessionCommand, SessionRequest};

/// The longest `unique_id` and `client_id`, in bytes (a UUID is 36).
pub const MAX_ID_BYTES: usize = 128;

/// A JSON object read with every key checked for a second occurrence (a
/// plain `serde_json::Value` keeps the last one silently).
struct UniqueKeys;

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "field `{}` appears twice; each field must appear once",
                    key.chars().take(64).collect::<String>()
                )));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Err with the repeated key's message if a top-level key of the object in
/// `body` appears twice.
fn check_unique_keys(body: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::Deserializer::deserialize_map(&mut de, UniqueKeys).map_err(|e| {
        let m = e.to_string();
        // serde_json adds " at line L column C"; keep the reason.
        m.split(" at line ").next().unwrap_or(&m).to_owned()
    })
}

/// A request that could not be accepted, with whatever ids it carried so the
/// reply can still echo them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub unique_id: Option<String>,
    pub client_id: Option<String>,
    pub reason: String,
}

impl SessionRequest {
    /// Checks a request strictly: JSON, an object, the mandatory fields as
    /// strings, a well-formed datetime, a known command, exactly the fields
    /// that command takes. Whether the datetime is too old is the server's
    /// call ([`check_age`](super::check_age)).
    pub fn parse(body: &[u8]) -> Result<SessionRequest, Rejected> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Rejected {
            unique_id: None,
            client_id: None,
            reason: format!("not JSON: {e}"),
        })?;
        let Value::Object(obj) = value else {
            return Err(Rejected {
                unique_id: None,
                client_id: None,
                reason: format!("expected one JSON object, got {}", kind(&value)),
            });
        };
        // Ids are echoed only if they are within bounds.
        let echo = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|v| v.len() <= MAX_ID_BYTES)
                .map(str::to_owned)
        };
        let mut rejected = Rejected {
            unique_id: echo("unique_id"),
            client_id: echo("client_id"),
            reason: String::new(),
        };
        let fail = |mut r: Rejected, reason: String| {
            r.reason = reason;
            Err(r)
        };
        if let Err(reason) = check_unique_keys(body) {
            return fail(rejected, reason);
        }
        for key in ["unique_id", "client_id", "session_id"] {
            if let Some(v) = obj.get(key).and_then(Value::as_str) {
                if v.len() > MAX_ID_BYTES {
                    return fail(
                        rejected,
                        format!(
                            "field `{key}` is {} bytes long; expected at most {MAX_ID_BYTES}",
                            v.len()
                        ),
                    );
                }
            }
        }
        let unique_id = match required_string(&obj, "unique_id") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        let client_id = match required_string(&obj, "client_id") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        let datetime = match required_string(&obj, "datetime") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        if let Err(reason) = parse_datetime(&datetime) {
            return fail(rejected, reason);
        }
        let name = match required_string(&obj, "command") {
            Ok(v) => v,
            Err(reason) => return fail(rejected, reason),
        };
        let fields: &[&str] = match name.as_str() {
            "create_session" => &[],
            "delete_session" => &["session_id"],
            "send_data_to_session" => &["session_id", "contents"],
            "get_session_info" => &["session_id"],
            other => {
                return fail(
                    rejected,
                    format!(
                        "unknown command {other:?}; expected one of {}",
                        SessionCommand::NAMES.join(", ")
                    ),
                )
            }
        };
        const COMMON: [&str; 4] = ["unique_id", "client_id", "datetime", "command"];
        if let Some(extra) = obj
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !fields.contains(&k.as_str()))
        {
            let takes = if fields.is_empty() {
                "no fields besides unique_id, client_id, datetime and command".to_owned()
            } else {
                format!("only {}", fields.join(" and "))
            };
            return fail(
                rejected,
                format!("unknown field `{extra}` for {name}, which takes {takes}"),
            );
        }
        let command = match name.as_str() {
            "create_session" => Ok(SessionCommand::CreateSession),
            "delete_session" => required_string(&obj, "session_id")
                .map(|session_id| SessionCommand::DeleteSession { session_id }),
            "send_data_to_session" => required_string(&obj, "session_id").and_then(|session_id| {
                Ok(SessionCommand::SendDataToSession {
                    session_id,
                    contents: string_field(&obj, "contents", true)?.unwrap_or_default(),
                })
            }),
            _ => match obj.get("session_id") {
                None | Some(Value::Null) => Ok(SessionCommand::GetSessionInfo { session_id: None }),
                Some(_) => {
                    required_string(&obj, "session_id").map(|id| SessionCommand::GetSessionInfo {
                        session_id: Some(id),
                    })
                }
            },
        };
        match command {
            Ok(command) => Ok(SessionRequest {
                unique_id,
                client_id,
                datetime,
                command,
            }),
            Err(reason) => {
                rejected.reason = reason;
                Err(rejected)
            }
        }
    }
}

/// A non-empty string field.
fn required_string(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    let v = string_field(obj, key, false)?.ok_or_else(|| format!("missing field `{key}`"))?;
    if v.is_empty() {
        return Err(format!("field `{key}` must not be empty"));
    }
    Ok(v)
}

/// A string field (empty allowed); `Ok(None)` when absent unless `must_exist`.
fn string_field(
    obj: &Map<String, Value>,
    key: &str,
    must_exist: bool,
) -> Result<Option<String>, String> {
    match obj.get(key) {
        None if must_exist => Err(format!("missing field `{key}`")),
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "field `{key}` must be a string, got {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
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

    fn parse(json: &str) -> Result<SessionRequest, Rejected> {
        SessionRequest::parse(json.as_bytes())
    }

    const HEAD: &str = r#""unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00.000Z""#;

    #[test]
    fn every_malformed_request_names_its_problem_and_keeps_the_ids_it_had() {
        let cases = [
            ("{", "not JSON"),
            ("[1,2]", "expected one JSON object, got an array"),
            ("\"hi\"", "expected one JSON object, got a string"),
            (r#"{"client_id":"c1"}"#, "missing field `unique_id`"),
            (
                r#"{"unique_id":7,"client_id":"c1"}"#,
                "field `unique_id` must be a string, got a number",
            ),
            (
                r#"{"unique_id":"","client_id":"c1"}"#,
                "field `unique_id` must not be empty",
            ),
            (r#"{"unique_id":"u1"}"#, "missing field `client_id`"),
            (
                r#"{"unique_id":"u1","client_id":"c1","command":"create_session"}"#,
                "missing field `datetime`",
            ),
            (
                r#"{"unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00Z","command":"create_session"}"#,
                "bad datetime",
            ),
            (
                r#"{"unique_id":"u1","client_id":"c1","datetime":17,"command":"create_session"}"#,
                "field `datetime` must be a string",
            ),
        ];
        for (json, want) in cases {
            let r = parse(json).unwrap_err();
            assert!(r.reason.contains(want), "{json}: {}", r.reason);
        }
        let r = parse(r#"{"unique_id":7,"client_id":"c1"}"#).unwrap_err();
        assert_eq!((r.unique_id, r.client_id), (None, Some("c1".into())));

        // Issue 17, item 11: a repeated field is refused, not read with its
        // last value; second 60 is refused, not read as a leap second.
        let ok = r#""unique_id":"u1","client_id":"c1","datetime":"2002-12-25T00:00:00.000Z","command":"create_session""#;
        for (json, want) in [
            (
                format!(r#"{{{ok},"unique_id":"u2"}}"#),
                "field `unique_id` appears twice",
            ),
            (
                format!(r#"{{{ok},"command":"delete_session"}}"#),
                "field `command` appears twice",
            ),
            (
                ok.replace(":00.000Z", ":60.000Z")
                    .replace("\"unique", "{\"unique")
                    + "}",
                "seconds go from 00 to 59",
            ),
            (
                ok.replace("u1", &"u".repeat(MAX_ID_BYTES + 1))
                    .replace("\"unique", "{\"unique")
                    + "}",
                "field `unique_id` is 129 bytes long; expected at most 128",
            ),
        ] {
            let r = parse(&json).unwrap_err();
            assert!(r.reason.contains(want), "{json}: {}", r.reason);
        }
        let long = parse(&format!(
            r#"{{"unique_id":"{}","client_id":"c1"}}"#,
            "u".repeat(4 << 20)
        ))
        .unwrap_err();
        assert_eq!(
            (long.unique_id, long.client_id.as_deref()),
            (None, Some("c1"))
        );
        assert!(parse(&format!("{{{ok}}}")).is_ok());

        let with_head = [
            ("", "missing field `command`"),
            (
                r#","command":5"#,
                "field `command` must be a string, got a number",
            ),
            (
                r#","command":"reboot""#,
                "unknown command \"reboot\"; expected one of create_session",
            ),
            (
                r#","command":"delete_session""#,
                "missing field `session_id`",
            ),
            (
                r#","command":"delete_session","session_id":["s"]"#,
                "field `session_id` must be a string, got an array",
            ),
            (
                r#","command":"send_data_to_session","session_id":"s1""#,
                "missing field `contents`",
            ),
            (
                r#","command":"send_data_to_session","session_id":"s1","contents":null"#,
                "field `contents` must be a string, got null",
            ),
            (
                r#","command":"create_session","session_id":"s1""#,
                "unknown field `session_id` for create_session",
            ),
            (
                r#","command":"get_session_info","sesion_id":"s1""#,
                "unknown field `sesion_id` for get_session_info, which takes only session_id",
            ),
            (
                r#","command":"get_session_info","session_id":3"#,
                "field `session_id` must be a string",
            ),
        ];
        for (rest, want) in with_head {
            let json = format!("{{{HEAD}{rest}}}");
            let r = parse(&json).unwrap_err();
            assert!(r.reason.contains(want), "{json}: {}", r.reason);
            assert_eq!(r.unique_id.as_deref(), Some("u1"));
            assert_eq!(r.client_id.as_deref(), Some("c1"));
        }
        // Empty contents are fine; a null session_id means "all sessions".
        assert!(parse(&format!(
            r#"{{{HEAD},"command":"send_data_to_session","session_id":"s1","contents":""}}"#
        ))
        .is_ok());
        assert_eq!(
            parse(&format!(
                r#"{{{HEAD},"command":"get_session_info","session_id":null}}"#
            ))
            .unwrap()
            .command,
            SessionCommand::GetSessionInfo { session_id: None }
        );
    }
}
